"""Negative SI-SDR with PIT: formula, assignment against a brute force, silence, lengths; the metrics."""

import itertools
import math
from pathlib import Path

import pytest
import torch
from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio, signal_distortion_ratio

from core.utils import InputError
from domains.speech.losses import BRUTE_FORCE_MAX, PITSISDRLoss, best_permutation, pairwise_si_sdr, si_sdr
from domains.speech.metrics import SeparationMetrics

EMBEDDED = Path(__file__).resolve().parents[2] / "data" / "speech" / "embedded"


def brute_force(estimates: torch.Tensor, references: torch.Tensor) -> tuple[float, tuple[int, ...]]:
    """Best mean SI-SDR over every permutation of one utterance, straight from the definition."""
    best = (-math.inf, ())
    s = references.shape[0]
    for perm in itertools.permutations(range(s)):
        value = sum(
            float(scale_invariant_signal_distortion_ratio(estimates[perm[j]], references[j], zero_mean=True))
            for j in range(s)
        )
        best = max(best, (value / s, perm))
    return best


def test_si_sdr_matches_torchmetrics() -> None:
    torch.manual_seed(0)
    ref = torch.randn(3, 2, 2000)
    est = ref + 0.3 * torch.randn_like(ref) + 0.5  # an offset: both remove the mean
    torch.testing.assert_close(
        si_sdr(est, 2 * ref),
        scale_invariant_signal_distortion_ratio(est, ref, zero_mean=True),
        atol=1e-3,
        rtol=0,
    )


@pytest.mark.parametrize("sources", [2, 3, 4, 5])
def test_pit_equals_brute_force_permutation_search(sources: int) -> None:
    torch.manual_seed(sources)
    refs = torch.randn(4, sources, 800)
    shuffled = torch.stack([refs[b, torch.randperm(sources)] for b in range(4)])
    est = shuffled + 0.8 * torch.randn_like(refs)
    result = PITSISDRLoss()(est, refs)
    for b in range(4):
        value, perm = brute_force(est[b], refs[b])
        assert tuple(result.permutation[b].tolist()) == perm
        assert float(result.si_sdr[b].mean()) == pytest.approx(value, abs=1e-3)
    assert float(result.loss) == pytest.approx(-float(result.si_sdr.mean()), abs=1e-5)
    torch.testing.assert_close(si_sdr(result.aligned(est), refs), result.si_sdr)
    assert (sources > BRUTE_FORCE_MAX) == (math.factorial(sources) > 6)


def test_hungarian_and_exhaustive_agree_on_three_sources() -> None:
    torch.manual_seed(1)
    scores = torch.randn(16, 3, 3)
    exhaustive = best_permutation(scores)
    for b in range(16):
        perms = list(itertools.permutations(range(3)))
        best = max(perms, key=lambda p: sum(float(scores[b, p[j], j]) for j in range(3)))
        assert tuple(exhaustive[b].tolist()) == best


def test_loss_is_differentiable_and_lower_for_better_estimates() -> None:
    torch.manual_seed(0)
    refs = torch.randn(2, 2, 500)
    good = (refs.flip(1) + 0.1 * torch.randn_like(refs)).requires_grad_()
    bad = refs.flip(1) + 1.0 * torch.randn_like(refs)
    loss = PITSISDRLoss()
    result = loss(good, refs)
    result.loss.backward()
    assert good.grad is not None and torch.isfinite(good.grad).all()
    assert float(result.loss.detach()) < float(loss(bad, refs).loss)
    assert (result.permutation == torch.tensor([[1, 0], [1, 0]])).all()


def test_silent_reference_gives_no_nan_and_is_counted() -> None:
    torch.manual_seed(0)
    refs = torch.randn(2, 2, 600)
    refs[0, 1] = 0.0
    refs[1] = 0.0  # an utterance with only silent references
    est = torch.randn(2, 2, 600, requires_grad=True)
    result = PITSISDRLoss()(est, refs)
    result.loss.backward()
    assert torch.isfinite(result.loss) and torch.isfinite(est.grad).all()
    assert result.silent.tolist() == [[False, True], [True, True]]
    # Only the one non-silent reference counts.
    assert float(result.loss.detach()) == pytest.approx(-float(result.si_sdr[0, 0].detach()), abs=1e-5)
    assert result.si_sdr[0, 1] == 0 and (result.si_sdr[1] == 0).all()
    metrics = SeparationMetrics(sdr=True, perceptual=False)
    metrics.update(est.detach(), refs, refs.sum(dim=1))
    values = metrics.compute()
    assert int(values["silent_sources"]) == 3 and int(values["sources"]) == 1
    assert all(torch.isfinite(v).all() for v in values.values())


def test_lengths_ignore_the_padding() -> None:
    torch.manual_seed(0)
    refs = torch.randn(2, 2, 1000)
    est = refs + 0.2 * torch.randn_like(refs)
    padded_est, padded_ref = est.clone(), refs.clone()
    padded_est[1, :, 700:] = 5.0  # garbage after the valid samples
    padded_ref[1, :, 700:] = 0.0
    scores, _ = pairwise_si_sdr(padded_est, padded_ref, torch.tensor([1000, 700]))
    torch.testing.assert_close(
        scores[1], pairwise_si_sdr(est[1:, :, :700], refs[1:, :, :700])[0][0], atol=1e-4, rtol=0
    )
    with pytest.raises(InputError, match="lengths"):
        pairwise_si_sdr(est, refs, torch.tensor([1000, 1001]))
    with pytest.raises(InputError, match="one shape"):
        pairwise_si_sdr(est, refs[:, :1])


def test_metrics_improvements_lengths_and_merge() -> None:
    """SI-SDRi/SDRi against direct computations; two metric objects merged equal one fed everything (DDP)."""
    torch.manual_seed(0)
    refs = torch.randn(2, 2, 1600)
    refs[1, :, 1200:] = 0.0
    mix = refs.sum(dim=1)
    est = refs.flip(1) + 0.2 * torch.randn_like(refs)
    lengths = torch.tensor([1600, 1200])
    whole = SeparationMetrics(perceptual=False)
    whole.update(est, refs, mix, lengths)
    expected_si, expected_mix, expected_sdr, expected_mix_sdr = [], [], [], []
    for b, n in enumerate(lengths.tolist()):
        e, r, m = est[b, :, :n].flip(0), refs[b, :, :n], mix[b, :n]
        expected_si += scale_invariant_signal_distortion_ratio(e, r, zero_mean=True).tolist()
        expected_mix += scale_invariant_signal_distortion_ratio(m.expand_as(r), r, zero_mean=True).tolist()
        # One signal at a time, as the metric does: torch's batched LU solve fails at random with MKL threads.
        expected_sdr += [
            float(signal_distortion_ratio(a, b)) for a, b in zip(e.double(), r.double(), strict=True)
        ]
        mixtures = m.expand_as(r).double()
        expected_mix_sdr += [
            float(signal_distortion_ratio(a, b)) for a, b in zip(mixtures, r.double(), strict=True)
        ]
    values = whole.compute()
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert float(values["si_sdr"]) == pytest.approx(mean(expected_si), abs=1e-2)
    assert float(values["mixture_si_sdr"]) == pytest.approx(mean(expected_mix), abs=1e-2)
    assert float(values["si_sdri"]) == pytest.approx(mean(expected_si) - mean(expected_mix), abs=1e-2)
    assert float(values["sdri"]) == pytest.approx(mean(expected_sdr) - mean(expected_mix_sdr), abs=1e-2)
    assert int(values["utterances"]) == 2 and int(values["sources"]) == 4
    first, second = SeparationMetrics(perceptual=False), SeparationMetrics(perceptual=False)
    first.update(est[:1], refs[:1], mix[:1], lengths[:1])
    second.update(est[1:], refs[1:], mix[1:], lengths[1:])
    first.merge_state(second)
    for key, value in first.compute().items():
        torch.testing.assert_close(value, values[key])


@pytest.mark.parametrize(("package", "key"), [("pesq", "pesq"), ("pystoi", "stoi")])
def test_perceptual_metrics_when_their_packages_are_installed(package: str, key: str) -> None:
    """Real speech (an embedded Libri2Mix mixture): lightly disturbed references beat the mixture.

    The improvement is the difference of the two.
    """
    pytest.importorskip(package)
    from domains.speech.audio import load_audio

    example = EMBEDDED / "libri2mix_test" / "ex_0"
    if not example.is_dir():
        pytest.skip(f"{example} is absent")
    sources = sorted(p for p in example.iterdir() if p.stem in ("s0", "s1"))
    refs = torch.stack([load_audio(p, 8000)[0] for p in sources])[None]
    mix = load_audio(next(example.glob("mixture.*")), 8000)[0][None]
    torch.manual_seed(0)
    est = refs + 0.003 * torch.randn_like(refs)
    metrics = SeparationMetrics(sample_rate=8000, sdr=False)
    metrics.update(est, refs, mix)
    values = metrics.compute()
    assert {key, f"mixture_{key}", f"{key}i"} <= set(values)
    assert float(values[key]) > float(values[f"mixture_{key}"])
    torch.testing.assert_close(values[f"{key}i"], values[key] - values[f"mixture_{key}"])
    assert "pesq" not in SeparationMetrics(perceptual=False).compute()
