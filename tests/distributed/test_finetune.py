"""Fine-tuning across runs and domains' datasets, through ``attnlab fit --model.pretrained``, as users run it.

Each case trains a source run, then starts a second run on other data from its checkpoint and checks the
log line that says what was loaded, adapted and skipped, and that the loaded tensors are the source's:

* finance: another day, with the backbone frozen (``FreezeBackbone``);
* medical: 1-channel MRI (MSD hippocampus) to a 2-channel dataset with another label set; the input
  convolution is adapted as timm does for ``in_chans`` and the head is new;
* recsys: another catalogue; the item table cannot transfer, the transformer body does.
"""

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from tests.distributed.processes import REPO

FINANCE = REPO / "configs" / "finance" / "smoke.yaml"
MEDICAL = REPO / "configs" / "medical" / "smoke.yaml"
RECSYS = REPO / "configs" / "recsys" / "smoke.yaml"
QUICK = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]
QUICK += ["--trainer.enable_progress_bar=false"]


def _fit(run_attnlab, config: Path, root: Path, *extra: str) -> str:
    done = run_attnlab(
        "fit", f"--config={config}", f"--trainer.default_root_dir={root}", *QUICK, *extra, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def _report(log: str) -> str:
    match = re.search(r"pretrained weights from .*?loaded (\d+) tensors.*", log)
    assert match, log[-3000:]
    return log[match.start() :]


@pytest.mark.slow
def test_finance_fine_tunes_on_another_day_with_a_frozen_backbone(tmp_path: Path, run_attnlab) -> None:
    _fit(run_attnlab, FINANCE, tmp_path / "source")
    source = tmp_path / "source" / "checkpoints" / "last.ckpt"
    day2 = "data/finance/tiny/SIM_2024-01-02_34200000_57600000_message_2.csv"
    day3 = "data/finance/tiny/SIM_2024-01-03_34200000_57600000_message_2.csv"
    log = _fit(
        run_attnlab,
        FINANCE,
        tmp_path / "target",
        f"--model.pretrained={source}",
        f"--data.train_files=[{day2}]",
        f"--data.val_files=[{day3}]",
        "--trainer.callbacks+=FreezeBackbone",
    )
    report = _report(log)
    assert ", skipped 0," in report and "0 model tensors not in the checkpoint" in report
    assert re.search(r"FreezeBackbone\(freeze\): froze \d+ backbone parameters", log)
    before, after = _state(source), _state(tmp_path / "target" / "checkpoints" / "last.ckpt")
    frozen = [k for k in before if not k.startswith("network.head")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen), "the frozen backbone moved"
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("network.head"))


def _two_channel_decathlon(source: Path, target: Path, cases: list[str]) -> None:
    """MSD layout with 2 modalities (the MRI and its square, rescaled) and one foreground label."""
    (target / "imagesTr").mkdir(parents=True)
    (target / "labelsTr").mkdir()
    training = []
    for case in cases:
        image = nib.load(source / "imagesTr" / f"{case}.nii.gz")
        data = np.asarray(image.dataobj, dtype=np.float32)
        stacked = np.stack([data, data**2 / max(float(data.max()), 1.0)], axis=-1)
        nib.save(nib.Nifti1Image(stacked, image.affine), target / "imagesTr" / f"{case}.nii.gz")
        label = nib.load(source / "labelsTr" / f"{case}.nii.gz")
        binary = (np.asarray(label.dataobj) > 0).astype(np.uint8)
        nib.save(nib.Nifti1Image(binary, label.affine), target / "labelsTr" / f"{case}.nii.gz")
        training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
    dataset = {
        "name": "two-channel fixture",
        "modality": {"0": "MRI", "1": "MRI squared"},
        "labels": {"0": "background", "1": "hippocampus"},
        "training": training,
    }
    (target / "dataset.json").write_text(json.dumps(dataset))


@pytest.mark.slow
def test_medical_fine_tunes_across_channels_and_labels(tmp_path: Path, run_attnlab) -> None:
    _fit(run_attnlab, MEDICAL, tmp_path / "source")
    source = tmp_path / "source" / "checkpoints" / "last.ckpt"
    cases = ["hippocampus_001", "hippocampus_003", "hippocampus_004", "hippocampus_007"]
    data = tmp_path / "two_channel"
    _two_channel_decathlon(REPO / "data" / "medical" / "hippocampus", data, cases)
    log = _fit(
        run_attnlab,
        MEDICAL,
        tmp_path / "target",
        f"--model.pretrained={source}",
        f"--data.root={data}",
        "--data.val_cases=[hippocampus_004]",
        "--data.test_cases=[hippocampus_007]",
    )
    report = _report(log)
    adapted = re.findall(r"adapted: (\S+) input channels 1 -> 2", report)
    assert adapted == ["network.stem.conv.weight", "network.pyramid.0.weight"] or len(adapted) >= 1, report
    skipped = re.findall(r"skipped: (\S+) \(shape", report)
    assert skipped and all(".heads." in name for name in skipped), skipped  # 3 classes -> 2
    before = _state(source)[adapted[0]]
    # The run trained two steps from the adapted stem: it is near the source's stem repeated and halved.
    after = _state(tmp_path / "target" / "checkpoints" / "last.ckpt")[adapted[0]]
    expected = before.repeat(1, 2, *([1] * (before.ndim - 2))) / 2
    assert after.shape == expected.shape
    assert (after - expected).abs().max() < 0.05 < expected.abs().max()


@pytest.mark.slow
def test_recsys_transfers_the_body_to_another_catalogue(tmp_path: Path, run_attnlab) -> None:
    _fit(run_attnlab, RECSYS, tmp_path / "source")
    source = tmp_path / "source" / "checkpoints" / "last.ckpt"
    # Another catalogue: the interactions with three items in four (and a smaller item table).
    lines = (REPO / "data" / "recsys" / "tiny" / "tiny.inter").read_text().splitlines()
    kept = [line for line in lines[1:] if int(line.split("\t")[1]) % 4]
    other = tmp_path / "data" / "other.inter"
    other.parent.mkdir()
    other.write_text("\n".join([lines[0], *kept]) + "\n")
    log = _fit(
        run_attnlab, RECSYS, tmp_path / "target", f"--model.pretrained={source}", f"--data.path={other}"
    )
    report = _report(log)
    assert re.search(r"skipped: network\.item_emb\.weight \(shape \(\d+, 16\) in checkpoint", report), report
    loaded = int(re.search(r"loaded (\d+) tensors", report).group(1))
    body = [k for k in _state(source) if k.startswith("network.") and "item_emb" not in k]
    assert loaded == len(body), "every tensor but the item table transfers"
