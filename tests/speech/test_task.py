"""The separation task through the CLI (fit, audio logging, silent sources, predict), chunked inference."""

import math
from pathlib import Path

import pytest
import soundfile as sf
import torch
import yaml

from core.cli import main
from domains.speech.inference import separate, trapezoid_window
from domains.speech.losses import PITSISDRLoss, si_sdr
from domains.speech.models import ConvTasNet
from tests.speech.audio_fixtures import tree_state, voiced, write_examples, write_wav

REPO = Path(__file__).resolve().parents[2]
LIBRI2MIX = REPO / "data" / "speech" / "embedded" / "libri2mix_test" / "ex_0"
TINY = [
    "--model.network=ConvTasNet",
    "--model.network.enc_channels=16",
    "--model.network.bottleneck_channels=8",
    "--model.network.hidden_channels=16",
    "--model.network.num_layers=2",
    "--model.network.num_stacks=1",
]


def _examples_with_a_silent_source(root: Path) -> Path:
    write_examples(root, count=4)
    # ex_3: speaker s1 never talks (SI-SDR undefined for that reference).
    wave, rate = sf.read(str(root / "ex_3" / "s0.wav"), dtype="float32")
    write_wav(root / "ex_3" / "s1.wav", 0 * wave, rate)
    write_wav(root / "ex_3" / "mixture.wav", wave, rate)
    return root


def _fit_args(data: Path, out: Path) -> list[str]:
    return [
        "--model=SeparationTask",
        *TINY,
        "--data=SeparationDataModule",
        f"--data.root={data}",
        "--data.layout=examples",
        "--data.train_split=.",
        "--data.val_split=.",
        "--data.test_split=.",
        "--data.segment_seconds=0.5",
        "--data.batch_size=2",
        f"--trainer.default_root_dir={out}",
        "--trainer.max_epochs=2",
    ]


@pytest.mark.slow
def test_fit_logs_audio_and_counts_silent_sources_then_predicts_at_the_input_rate(tmp_path: Path) -> None:
    data = _examples_with_a_silent_source(tmp_path / "data")
    before = tree_state(data)
    fit = main(["fit", *_fit_args(data, tmp_path / "run")])
    metrics = fit.trainer.callback_metrics
    assert int(metrics["val_silent_sources"]) == 1 and int(metrics["val_sources"]) == 7
    assert torch.isfinite(metrics["val_loss"]) and torch.isfinite(metrics["val_si_sdri"])
    assert int(metrics["train_silent_sources"]) >= 1  # ex_3's crops are in every training epoch

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = next((tmp_path / "run").rglob("events.out.tfevents.*"))
    tags = EventAccumulator(str(events), size_guidance={"audio": 0, "images": 0}).Reload().Tags()
    assert {"val_audio/ex_0/mixture", "val_audio/ex_0/estimate1", "val_audio/ex_0/reference2"} <= set(
        tags["audio"]
    )
    assert "val_spectrogram/ex_0" in tags["images"]

    # Predict a folder of 16 kHz files of odd lengths: 16 kHz outputs, same lengths, named after the inputs.
    inputs = tmp_path / "to_separate"
    lengths = {"a": 16001, "b": 12345}
    for name, n in lengths.items():
        write_wav(
            inputs / f"{name}.wav", voiced(n / 16000, 16000, 7)[:n] + voiced(n / 16000, 16000, 8)[:n], 16000
        )
    out = tmp_path / "separated"
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    main(
        [
            "predict",
            *_fit_args(data, tmp_path / "run"),
            f"--data.predict_root={inputs}",
            f"--ckpt_path={ckpt}",
            f"--prediction_writer.output_dir={out}",
        ]
    )
    for name, n in lengths.items():
        for k in (1, 2):
            info = sf.info(str(out / f"{name}_s{k}.wav"))
            assert info.samplerate == 16000 and abs(info.frames - n) <= 2
    with pytest.raises(ValueError, match="among the input data"):
        main(
            [
                "predict",
                *_fit_args(data, tmp_path / "run"),
                f"--data.predict_root={inputs}",
                f"--ckpt_path={ckpt}",
                f"--prediction_writer.output_dir={inputs / 'out'}",
            ]
        )
    assert tree_state(data) == before


def _test_mixture() -> tuple[torch.Tensor, torch.Tensor]:
    """A real Libri2Mix test mixture (about 5 s) when the committed subset is there, else a synthetic one."""
    if LIBRI2MIX.is_dir():
        files = {p.stem: p for p in LIBRI2MIX.iterdir()}
        mix = torch.from_numpy(sf.read(str(files["mixture"]), dtype="float32")[0])
        refs = torch.stack(
            [torch.from_numpy(sf.read(str(files[f"s{k}"]), dtype="float32")[0]) for k in (0, 1)]
        )
        return mix[None], refs[None]
    refs = torch.stack([torch.from_numpy(voiced(5.0, 8000, s)) for s in (1, 2)])[None]
    return refs.sum(dim=1), refs


def test_chunked_inference_equals_one_pass_within_0_1_db() -> None:
    torch.manual_seed(0)
    mixture, refs = _test_mixture()
    # A trained-looking separator is not needed: the claim is about the stitching. cLN keeps every frame's
    # output local (receptive field 31 frames = 248 samples < a quarter of the 4000-sample overlap).
    net = ConvTasNet(
        enc_channels=32, bottleneck_channels=16, hidden_channels=32, num_layers=4, num_stacks=1, norm="cLN"
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    loss = PITSISDRLoss()
    for _ in range(30):  # a few steps so that the two outputs differ and SI-SDRi is not trivially ~0
        result = loss(net(mixture[:, :8000]), refs[..., :8000])
        optimizer.zero_grad()
        result.loss.backward()
        optimizer.step()
    net.eval()
    with torch.no_grad():
        full = net(mixture)
        chunked = separate(net, mixture, segment=16000, overlap=4000, multiple=net.stride)
    assert mixture.shape[-1] > 2 * 16000
    baseline = si_sdr(mixture[:, None].expand_as(refs), refs).mean()
    one_pass = -loss(full, refs).loss - baseline
    stitched = -loss(chunked, refs).loss - baseline
    assert abs(float(one_pass - stitched)) < 0.1
    assert (si_sdr(chunked, full) > 40).all()


def test_chunks_are_aligned_by_permutation() -> None:
    torch.manual_seed(0)
    net = ConvTasNet(
        enc_channels=16, bottleneck_channels=8, hidden_channels=16, num_layers=3, num_stacks=1, norm="cLN"
    ).eval()
    mixture = torch.randn(2, 10007)
    calls = []

    def swapping(x: torch.Tensor) -> torch.Tensor:  # every other segment comes out in the other order
        calls.append(x.shape[-1])
        y = net(x)
        return y.flip(1) if len(calls) % 2 == 0 else y

    with torch.no_grad():
        full, chunked = net(mixture), separate(swapping, mixture, 3000, 1000, multiple=8)
    assert len(calls) > 3
    assert (si_sdr(chunked, full) > 40).all()
    with pytest.raises(ValueError, match="overlap"):
        separate(net, mixture, 3000, 3000)


def test_cross_fade_weights_sum_to_one_over_overlaps() -> None:
    a = trapezoid_window(100, 0, 40)
    b = trapezoid_window(100, 40, 0)
    total = torch.cat((a[:60], a[60:] + b[:40], b[40:]))
    assert total.min() > 0
    assert a[-10:].eq(0).all() and b[:10].eq(0).all()  # the quarter next to each cut edge is unused


def test_configured_plateau_schedule_halves_after_five_epochs_without_beating_the_best() -> None:
    """The configs' ReduceLROnPlateau, on an oscillating validation loss that never beats its first value.

    ClearerVoice's solver would count 1.2 < 1.5 as an improvement (it stored 1.5 as its "best") and never
    halve; the configured scheduler halves once five epochs have not beaten 1.0.
    """
    spec = yaml.safe_load((REPO / "configs" / "speech" / "mossformer_librimix.yaml").read_text())[
        "lr_scheduler"
    ]
    assert spec["class_path"].endswith("ReduceLROnPlateau") and spec["init_args"]["monitor"] == "val_loss"
    args = {k: v for k, v in spec["init_args"].items() if k != "monitor"}
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.5e-4)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **args)
    lrs = []
    for val_loss in [1.0, 1.5, 1.2, 1.4, 1.3, 1.45, 1.35]:
        scheduler.step(val_loss)
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[:6] == [1.5e-4] * 6 and math.isclose(lrs[6], 0.75e-4)
