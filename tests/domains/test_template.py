"""The template domain of docs/adding-a-domain.md, installed the way an outside package would be.

``docs/template/tabular`` is copied into a folder with a ``.dist-info`` whose ``entry_points.txt`` registers
it under ``attnlab.domains``; nothing in attnlab names it. The CLI must find it, and it must pass the same
contract as the project's own domains.
"""

from pathlib import Path

import pytest

from core.cli import main
from core.plugins import domain_entry_points
from tests.domains.contract import REPO, check_commands, check_ddp, check_exact_resume, load_domain


def test_an_outside_package_registers_a_domain(installed_template: Path, tmp_path: Path, capsys) -> None:
    assert "tabular" in [ep.name for ep in domain_entry_points()]
    domain = load_domain("tabular")
    assert domain.smoke_config == installed_template / "tabular" / "smoke.yaml"
    check_commands(domain, tmp_path, capsys)


def test_the_template_trains_with_attention_swapped(installed_template: Path, tmp_path: Path) -> None:
    domain = load_domain("tabular")
    args = [
        f"--config={domain.smoke_config}",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.max_epochs=8",
    ]
    args += ["--model.network=FeatureTransformer", "--model.attention=LinearAttention"]
    args += ["--optimizer=AdamW", "--optimizer.lr=0.02"]
    cli = main(["fit", *args, "--trainer.enable_progress_bar=false"])
    # Three blobs: far above the 1/3 of chance after a few epochs (0.875 on the 48 validation rows).
    assert float(cli.trainer.callback_metrics["val_accuracy"]) > 0.8
    with pytest.raises(ValueError, match="has no attention to replace"):
        main(["fit", *args[:2], "--model.attention=LinearAttention", "--trainer.fast_dev_run=true"])


@pytest.mark.slow
@pytest.mark.xdist_group("ddp")
def test_the_template_under_ddp(installed_template: Path, tmp_path: Path) -> None:
    check_ddp(load_domain("tabular"), tmp_path, pythonpath=f"{installed_template}:{REPO}")


@pytest.mark.slow
def test_the_template_resumes_exactly(installed_template: Path, tmp_path: Path) -> None:
    check_exact_resume(load_domain("tabular"), tmp_path)
