"""The ``attnlab`` command itself: dispatch, start-up, entry points, and the behaviour every domain shares.

Domain-independent behaviour runs on the template domain (``installed_template``), registered the way an
outside package registers one.
"""

import copy
import os
import signal
import subprocess
import sys
import time
from argparse import ArgumentError
from pathlib import Path

import pytest
import torch

from core.cli import main, usage
from core.plugins import load_domains

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _template_args(site: Path, root: Path, *extra: str) -> list[str]:
    config = site / "tabular" / "smoke.yaml"
    return [
        f"--config={config}",
        f"--trainer.default_root_dir={root}",
        "--trainer.enable_progress_bar=false",
        *extra,
    ]


def test_help_lists_every_command_and_domain_without_importing_torch() -> None:
    code = "import sys; from core.cli import main; main(['--help']); print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    *text, imported = proc.stdout.strip().splitlines()
    assert imported == "False", "attnlab --help imported torch"
    text = "\n".join(text)
    for command in ("fit", "validate", "test", "predict", "attention", "bench"):
        assert f"\n  {command} " in text, command
    assert "domains: " in text and "finance" in text and "recsys" in text and "medical" in text


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err
    assert main(["bench"]) == 2  # registered by benchmarks/ through an entry point


def test_attention_list_ends_quietly_on_a_closed_pipe() -> None:
    shell = f"set -o pipefail; {sys.executable} -m core.cli attention list | head -n 2"
    proc = subprocess.run(["bash", "-c", shell], env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
    assert proc.stdout.startswith("| name | kind |")


def test_attention_list_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["attention", "list", "--kind", "token"]) == 0
    table = capsys.readouterr().out
    assert "| MultiHeadAttention | token |" in table and "| CBAM |" not in table


def test_a_missing_extra_skips_the_domain_unless_it_is_named(tmp_path: Path, monkeypatch) -> None:
    info = tmp_path / "faraway-1.0.dist-info"
    info.mkdir()
    requires = 'Requires-Dist: a-package-nobody-installed>=1 ; extra == "radar"\n'
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: faraway\nVersion: 1.0\n{requires}")
    (info / "entry_points.txt").write_text("[attnlab.domains]\nradar = faraway_radar:DOMAIN [radar]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    skipped: list[tuple[str, str]] = []
    loaded = load_domains(
        ["fit", "--config=configs/finance/smoke.yaml"], on_skip=lambda *a: skipped.append(a)
    )
    assert "radar" not in loaded and "finance" in loaded
    assert skipped == [("radar", "the radar domain needs the 'radar' extra: pip install 'faraway[radar]'")]
    with pytest.raises(ImportError, match=r"pip install 'faraway\[radar\]'"):
        load_domains(["fit", "--config=configs/radar/x.yaml"])
    assert "radar (not installed: pip install 'faraway[radar]')" in usage()


def test_best_without_a_run_is_a_clear_error(installed_template: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Train first"):
        main(["test", *_template_args(installed_template, tmp_path), "--ckpt_path=best"])


def test_unknown_attention_option_is_rejected(installed_template: Path, tmp_path: Path) -> None:
    args = _template_args(installed_template, tmp_path, "--model.network=FeatureTransformer")
    with pytest.raises(ArgumentError, match="kernel_sz"):
        main(["fit", *args, "--model.attention=MultiHeadAttention", "--model.attention.kernel_sz=3"])


def test_hand_set_linked_value_that_disagrees_is_an_error(installed_template: Path, tmp_path: Path) -> None:
    args = _template_args(installed_template, tmp_path, "--trainer.fast_dev_run=true")
    with pytest.raises(ValueError, match=r"num_features=7 was set by hand but the data gives num_features=4"):
        main(["fit", *args, "--model.num_features=7"])
    cli = main(["fit", *args, "--model.num_features=4"])
    assert cli.model.hparams.num_features == 4 and cli.model.hparams.class_names == [
        "class_a",
        "class_b",
        "class_c",
    ]


def test_help_documents_task_and_network_options(installed_template: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model.help", "TabularClassifier"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--model.network ",
        "--model.attention ",
        "--model.pretrained ",
        "Token mixer for networks",
    ):
        assert option in text, option
    with pytest.raises(SystemExit):
        main(["fit", "--model=TabularClassifier", "--model.network.help", "FeatureTransformer"])
    network_help = capsys.readouterr().out
    assert "--network.dim" in network_help and "Token width" in network_help


def test_chosen_optimizer_gets_only_its_own_defaults(installed_template: Path, tmp_path: Path) -> None:
    """No option of a default optimizer leaks into the one a config chooses (was: AdamW weight decay)."""
    args = _template_args(installed_template, tmp_path, "--trainer.fast_dev_run=true")
    adam = main(["fit", *args, "--optimizer=Adam", "--optimizer.lr=0.002"]).trainer.optimizers[0]
    assert type(adam) is torch.optim.Adam
    assert adam.defaults["weight_decay"] == 0 and adam.defaults["lr"] == 0.002
    default = main(["fit", *args]).trainer.optimizers[0]  # no --optimizer: the task's AdamW
    assert type(default) is torch.optim.AdamW and default.defaults["lr"] == 1e-3
    assert default.defaults["weight_decay"] == 0.01


def test_last_checkpoint_follows_every_epoch(installed_template: Path, tmp_path: Path) -> None:
    """``last.ckpt`` is the newest epoch even when the monitored metric stopped improving."""
    args = _template_args(installed_template, tmp_path, "--trainer.max_epochs=3", "--optimizer=SGD")
    main(["fit", *args, "--optimizer.lr=0.0"])  # lr 0: the metric never improves after epoch 0
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 2 and last["global_step"] == 3 * 5


def test_command_line_wins_over_an_explicit_checkpoint(installed_template: Path, tmp_path: Path) -> None:
    """``--ckpt_path file.ckpt`` takes the run's options from the file, but never over the command line."""
    args = _template_args(installed_template, tmp_path, "--trainer.max_epochs=1")
    main(["fit", *args, "--model.network.hidden_dim=8"])
    ckpt = f"--ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}"
    # The config says 16: the checkpoint's 8 replaces it, so the weights load.
    assert main(["test", *args, ckpt]).model.hparams.network["init_args"]["hidden_dim"] == 8
    tested = main(["test", *args, ckpt, "--model.network.init_args.hidden_dim=8"])
    assert tested.model.network.body[0].out_features == 8
    # An explicit option is what the user gets, here a width the checkpoint's weights do not fit.
    with pytest.raises(RuntimeError, match=r"size mismatch for network\.body\.0\.weight"):
        main(["test", *args, ckpt, "--model.network.hidden_dim=24"])


def test_model_options_given_and_restored() -> None:
    from jsonargparse import Namespace

    from core.cli.lightning import model_options_given, restore_option

    argv = ["--model.network.init_args.hidden_dim=32", "--model.tta", "true", "--data.fold=1", "--model=X"]
    assert model_options_given(argv) == {("network", "hidden_dim"), ("tta",), ()}
    net = {"class_path": "MLP", "init_args": Namespace(hidden_dim=32, depth=2)}
    source = Namespace(class_path="T", init_args=Namespace(tta=True, network=Namespace(**net)))
    target = copy.deepcopy(source)
    target.init_args.tta, target.init_args.network.init_args.hidden_dim = False, 8
    target.init_args.network.init_args.depth = 3
    for option in (("tta",), ("network", "hidden_dim"), ("missing", "x")):
        restore_option(source, target, option)
    assert target.init_args.tta is True and target.init_args.network.init_args.hidden_dim == 32
    assert target.init_args.network.init_args.depth == 3  # not given: the checkpoint's value stays


@pytest.mark.slow
def test_killed_run_resumes_from_last_checkpoint(installed_template: Path, tmp_path: Path) -> None:
    args = ["fit", *_template_args(installed_template, tmp_path, "--trainer.max_epochs=120")]
    args += ["--checkpoint.every_n_train_steps=20", "--trainer.callbacks+=core.training.EMA"]
    env = {**ENV, "PYTHONPATH": f"{installed_template}:{REPO}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.cli", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    last = tmp_path / "checkpoints" / "last.ckpt"
    deadline, step = time.time() + 240, 0
    while time.time() < deadline and proc.poll() is None:
        if last.is_file():
            try:
                step = torch.load(last, weights_only=False)["global_step"]
            except Exception:  # being replaced right now; the atomic rename makes the next read succeed
                step = 0
            if 40 <= step < 500:
                break
        time.sleep(0.05)
    assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(last, weights_only=False)["global_step"]
    assert 0 < killed_at < 600
    resumed = subprocess.run(
        [sys.executable, "-m", "core.cli", *args, "--ckpt_path=last"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = torch.load(last, weights_only=False)
    assert "Restored all states from the checkpoint" in resumed.stderr
    # 120 epochs x 5 steps in all: the resumed run continued the schedule instead of restarting it.
    assert final["global_step"] == 600 and final["epoch"] == 119
    assert "current_model_state" in final  # EMA state survived the resume


def test_user_errors_are_one_line_and_bugs_are_not() -> None:
    from core.cli import user_error
    from core.utils import InputError

    try:
        try:
            raise InputError("data/x.csv, line 3, field 'price': expected an integer")
        except InputError as inner:
            raise ValueError(
                "Does not validate against any of the Union subtypes\nSubtypes: [A, B]\nErrors:\n  - x"
            ) from inner
    except ValueError as wrapped:
        assert user_error(wrapped) == "data/x.csv, line 3, field 'price': expected an integer"
    parser_error = ArgumentError(
        None,
        'Parser key "data":\n  Does not validate against any of the Union subtypes\n  Subtypes: [A, None]\n'
        "  Errors:\n    - Problem with given class_path 'domains.finance.LOBSTERDataModule':\n"
        "        Option 'data_dir' is not accepted\n    - Expected a <class 'NoneType'>\n"
        "  Given value type: <class 'str'>\n  Given value: x",
    )
    assert user_error(parser_error) == "Parser key \"data\": Option 'data_dir' is not accepted"
    assert user_error(KeyError("items")) is None  # a bug keeps its traceback


def test_unknown_attention_name_lists_the_closest() -> None:
    from core.cli.lightning import check_attention_names

    check_attention_names(["fit", "--model.attention=LinearAttention", "--model.attention=my.pkg.Mixer"])
    with pytest.raises(ValueError, match=r"--model.attention=LinearAtention: .*closest: LinearAttention"):
        check_attention_names(["fit", "--model.attention", "LinearAtention"])


def test_user_error_raised_in_a_worker_process_is_one_line() -> None:
    from core.cli import user_error

    worker = RuntimeError(
        "Caught InputError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n    raise InputError(...)\n'
        "core.utils.errors.InputError: label file /d/case_6.nii.gz holds unexpected label values [5]\n"
    )
    assert user_error(worker) == "label file /d/case_6.nii.gz holds unexpected label values [5]"
    bug = RuntimeError(
        "Caught KeyError in DataLoader worker process 0.\n"
        "Original Traceback (most recent call last):\nKeyError: 'x'"
    )
    assert user_error(bug) is None
