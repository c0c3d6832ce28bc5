"""The separation networks: sizes against the papers and torchaudio, shapes, attention swaps, overfitting."""

import math

import pytest
import torch
from torch import Tensor

from core.attention.registry import get_mechanism
from core.training import instantiate_network
from core.utils import InputError
from domains.speech.losses import PITSISDRLoss, si_sdr
from domains.speech.models import (
    ConvTasNet,
    DualPathSeparator,
    DualPathTiny,
    MossFormer,
    MossFormerSmall,
    MossFormerTiny,
    SeparationNetwork,
)

torchaudio = pytest.importorskip("torchaudio")

TINY_CTN = {
    "enc_channels": 64,
    "bottleneck_channels": 32,
    "hidden_channels": 64,
    "num_layers": 4,
    "num_stacks": 1,
}


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def synthetic_sources(samples: int = 4000, rate: int = 8000) -> Tensor:
    """Two voiced, vibrato, amplitude-modulated harmonic sources ``(1, 2, samples)`` of equal power."""
    t = torch.arange(samples) / rate

    def voice(f0: float, vibrato: float, phase: float) -> Tensor:
        pitch = f0 * (1 + 0.05 * torch.sin(2 * math.pi * vibrato * t))
        angle = 2 * math.pi * torch.cumsum(pitch, 0) / rate
        tone = sum(torch.sin(k * angle + k * phase) / k for k in range(1, 12))
        return tone * (0.6 + 0.4 * torch.sin(2 * math.pi * 3 * t + phase))

    sources = torch.stack([voice(130, 5, 0.3), voice(210, 3, 1.1)])
    return (sources / sources.std(dim=-1, keepdim=True) * 0.1)[None]


# ---------------------------------------------------------------- sizes


def test_convtasnet_matches_torchaudio_parameter_count() -> None:
    ours, theirs = ConvTasNet(), torchaudio.models.ConvTasNet()
    assert count(ours) == count(theirs) == 4_984_881


def test_convtasnet_equals_torchaudio_with_the_same_weights() -> None:
    """Layer for layer torchaudio's network: copying its weights gives its outputs (odd length included)."""
    torch.manual_seed(0)
    theirs = torchaudio.models.ConvTasNet(
        enc_num_feats=16, msk_num_feats=8, msk_num_hidden_feats=12, msk_num_layers=3, msk_num_stacks=2
    ).eval()
    ours = ConvTasNet(
        enc_channels=16, bottleneck_channels=8, hidden_channels=12, num_layers=3, num_stacks=2
    ).eval()
    src = theirs.state_dict()
    mg = "mask_generator."
    state = {
        "encoder.weight": src["encoder.weight"],
        "decoder.weight": src["decoder.weight"],
        "output_prelu.weight": src[mg + "output_prelu.weight"],
    }
    for part in ("input_norm", "input_conv", "output_conv"):
        for p in ("weight", "bias"):
            state[f"{part}.{p}"] = src[f"{mg}{part}.{p}"]
    for i in range(6):
        prefix = f"{mg}conv_layers.{i}."
        for key, value in src.items():
            if key.startswith(prefix + "conv_layers."):
                state[f"blocks.{i}.layers." + key[len(prefix + "conv_layers.") :]] = value
        for p in ("weight", "bias"):
            parts = [
                src[prefix + f"{name}.{p}"]
                for name in ("res_out", "skip_out")
                if prefix + f"{name}.{p}" in src
            ]
            state[f"blocks.{i}.out.{p}"] = torch.cat(parts)
    ours.load_state_dict(state)
    x = torch.randn(2, 1003)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x[:, None]), rtol=1e-4, atol=1e-5)


def test_mossformer_l_has_the_papers_42_1m_parameters() -> None:
    net = MossFormer()
    assert len(net.mask_net.blocks.blocks) == 24
    assert count(net) == 42_101_834
    assert round(count(net) / 1e6, 1) == 42.1


def test_presets_are_subclasses_with_smaller_defaults() -> None:
    assert isinstance(MossFormerSmall(), MossFormer) and isinstance(DualPathTiny(), DualPathSeparator)
    assert count(MossFormerTiny()) < count(MossFormerSmall()) < count(MossFormer())
    # SepFormer's published size is 26 M; the defaults of DualPathSeparator are its configuration.
    assert 25e6 < count(DualPathSeparator()) < 27e6


# ---------------------------------------------------------------- shapes and inputs


@pytest.mark.parametrize(
    "make",
    [
        lambda s: ConvTasNet(num_sources=s, **TINY_CTN),
        lambda s: MossFormerTiny(num_sources=s),
        lambda s: DualPathTiny(num_sources=s),
    ],
    ids=["convtasnet", "mossformer", "dualpath"],
)
@pytest.mark.parametrize("length", [16, 1000, 1001, 2777])
@pytest.mark.parametrize("sources", [2, 3])
def test_shapes_and_odd_lengths(make, length: int, sources: int) -> None:
    net = make(sources).eval()
    out = net(torch.randn(2, length))
    assert out.shape == (2, sources, length) and torch.isfinite(out).all()
    assert isinstance(net, SeparationNetwork)


@pytest.mark.parametrize(
    "net", [ConvTasNet(**TINY_CTN), MossFormerTiny(), DualPathTiny()], ids=lambda n: type(n).__name__
)
def test_bad_inputs_name_the_shape(net: SeparationNetwork) -> None:
    with pytest.raises(InputError, match=r"\(B, T\)"):
        net(torch.randn(2, 1, 800))
    if not isinstance(net, ConvTasNet):
        with pytest.raises(InputError, match="encoder window"):
            net(torch.randn(1, 8))


def test_batch_items_are_independent() -> None:
    """The gLN normalises per utterance: separating a batch equals separating each utterance alone."""
    net = ConvTasNet(**TINY_CTN).eval()
    x = torch.randn(3, 999)
    with torch.no_grad():
        torch.testing.assert_close(net(x)[1:2], net(x[1:2]), rtol=1e-4, atol=1e-5)


def test_factory_passes_num_sources_and_refuses_attention_without_mixer() -> None:
    net = instantiate_network(MossFormerTiny, num_sources=3)
    assert net(torch.randn(1, 500)).shape == (1, 3, 500)
    with pytest.raises(ValueError, match="no attention"):
        instantiate_network(ConvTasNet, num_sources=2, attention=get_mechanism("LinearAttention").cls)


# ---------------------------------------------------------------- injected attention


@pytest.mark.parametrize(
    ("mechanism", "causal"),
    [
        ("MultiHeadAttention", False),
        ("MossFormerAttention", False),
        ("LinearAttention", False),
        ("MultiHeadAttention", True),
        ("MossFormerAttention", True),
        ("LinearAttention", True),
        ("GatedDeltaNet", True),
    ],
)
def test_dualpath_runs_registered_mixers(mechanism: str, causal: bool) -> None:
    cls = get_mechanism(mechanism).cls
    net = DualPathTiny(attention=cls, causal=causal).eval()
    assert all(isinstance(m, cls) for path in (*net.intra, *net.inter) for m in path.mixers)
    x = torch.randn(2, 1201)
    with torch.no_grad():
        y = net(x)
        assert y.shape == (2, 2, 1201) and torch.isfinite(y).all()
        if causal:  # changing the future leaves the past alone (up to one encoder window)
            x2 = x.clone()
            x2[:, 700:] = torch.randn(2, 501)
            torch.testing.assert_close(net(x2)[..., : 700 - 16], y[..., : 700 - 16], rtol=1e-4, atol=1e-5)
            assert not torch.allclose(net(x2)[..., 700:], y[..., 700:])


def test_dualpath_separate_inter_mixer_and_causality_errors() -> None:
    lin, mha = get_mechanism("LinearAttention").cls, get_mechanism("MultiHeadAttention").cls
    net = DualPathTiny(attention=lin, inter_attention=mha)
    assert isinstance(net.intra[0].mixers[0], lin) and isinstance(net.inter[0].mixers[0], mha)
    with pytest.raises(ValueError, match="causal-only"):
        DualPathTiny(attention=get_mechanism("GatedDeltaNet").cls)


def test_dualpath_chunking_round_trip() -> None:
    net = DualPathTiny(chunk_size=8)
    h = torch.randn(2, 5, 37)
    chunks, padded = net.chunk(h)
    assert chunks.shape[2:] == (8, 5)
    # Every frame lies in exactly two half-overlapping chunks.
    torch.testing.assert_close(net.overlap_add(chunks, padded)[..., :37], 2 * h)


# ---------------------------------------------------------------- overfitting


@pytest.mark.parametrize(
    ("make", "lr", "max_steps"),
    [
        (lambda: ConvTasNet(**TINY_CTN), 3e-3, 300),
        (MossFormerTiny, 3e-3, 300),
        (DualPathTiny, 6e-3, 400),
    ],
    ids=["convtasnet", "mossformer", "dualpath"],
)
def test_overfits_one_mixture_beyond_20_db_si_sdri(make, lr: float, max_steps: int) -> None:
    torch.manual_seed(0)
    sources = synthetic_sources()
    mixture = sources.sum(dim=1)
    baseline = float(si_sdr(mixture[:, None].expand_as(sources), sources).mean())
    net = make()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = PITSISDRLoss()
    improvement = -math.inf
    for _ in range(max_steps):
        result = loss_fn(net(mixture), sources)
        opt.zero_grad()
        result.loss.backward()
        opt.step()
        improvement = -float(result.loss.detach()) - baseline
        if improvement > 21.0:
            break
    net.eval()
    with torch.no_grad():
        final = -float(loss_fn(net(mixture), sources).loss) - baseline
    assert final > 20.0, f"{type(net).__name__} reached only {final:.1f} dB SI-SDRi"
