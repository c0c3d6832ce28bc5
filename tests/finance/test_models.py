"""LOB networks: the LOBNetwork family, shapes, validation, over-fitting, injected attention, BiN."""

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import domains.finance
from core.attention import MultiHeadAttention, TokenMixer
from core.training.networks import instantiate_network
from domains.finance.models import (
    MLPLOB,
    TLOB,
    BiN,
    DeepLOB,
    LOBNetwork,
    LOBNetworkFactory,
    LogisticRegressionLOB,
)
from domains.finance.models.tlob import TransformerLayer

ModelFactory = Callable[[int, int, int], LOBNetwork]  # (num_features, seq_len, num_horizons) -> network

# A small instance of every network (each gets the over-fitting test below).
SMALL: dict[type[LOBNetwork], ModelFactory] = {
    TLOB: lambda f, t, h: TLOB(num_features=f, seq_len=t, num_horizons=h, hidden_dim=16, num_layers=2),
    MLPLOB: lambda f, t, h: MLPLOB(num_features=f, seq_len=t, num_horizons=h, hidden_dim=16, num_layers=2),
    DeepLOB: lambda f, t, h: DeepLOB(
        num_lob_features=8, seq_len=t, num_horizons=h, conv_channels=8, inception_channels=8, lstm_hidden=16
    ),
    LogisticRegressionLOB: lambda f, t, h: LogisticRegressionLOB(num_features=f, seq_len=t, num_horizons=h),
}
# What the task offers every network (LOBClassifier.configure_models): the data-derived sizes.
OFFERED = {"num_features": 12, "num_lob_features": 8, "seq_len": 24, "num_horizons": 2, "num_classes": 3}


def _subclasses(cls: type) -> set[type]:
    return {s for c in cls.__subclasses__() for s in {c, *_subclasses(c)}}


def test_every_network_is_a_lob_network() -> None:
    networks = {c for c in _subclasses(LOBNetwork) if c.__module__.startswith("domains.finance.")}
    assert networks == {TLOB, MLPLOB, DeepLOB, LogisticRegressionLOB}
    assert set(SMALL) == networks  # every network keeps an over-fitting test
    factory_keywords = set(inspect.signature(LOBNetworkFactory.__call__).parameters) - {"self"}
    assert factory_keywords == {*OFFERED, "attention"}
    for cls in networks:
        # Configs and `--model.network=<Name>` use the short name, which the package exports.
        assert getattr(domains.finance, cls.__name__) is cls
        params = inspect.signature(cls).parameters
        required = {n for n, p in params.items() if p.default is inspect.Parameter.empty}
        assert required <= factory_keywords, (
            f"{cls.__name__}: the task cannot give {required - factory_keywords}"
        )
        for name in params:  # every argument is documented: its docstring is --model.network.help
            assert f"{name}:" in (cls.__doc__ or ""), (cls.__name__, name)
        network = instantiate_network(cls, **OFFERED)
        assert isinstance(network, LOBNetwork)
        assert network(torch.randn(3, 24, 12)).shape == (3, 2, 3)
        assert isinstance(network.head, nn.Module)  # what FreezeBackbone leaves trainable


def test_only_networks_with_attention_accept_the_task_attention() -> None:
    with_attention = {c for c in SMALL if "attention" in inspect.signature(c).parameters}
    assert with_attention == {TLOB}
    factory = functools.partial(MultiHeadAttention, num_heads=2)
    tlob = instantiate_network(TLOB, attention=factory, **OFFERED)
    assert {layer.attn.mixer.num_heads for layer in tlob.layers} == {2}
    for cls in set(SMALL) - with_attention:
        with pytest.raises(ValueError, match=f"{cls.__name__} has no attention to replace"):
            instantiate_network(cls, attention=factory, **OFFERED)


def test_networks_take_only_the_sizes_they_declare() -> None:
    # DeepLOB reads the book columns only; the others the whole feature vector.
    deeplob = instantiate_network(
        functools.partial(DeepLOB, lstm_hidden=8), **{**OFFERED, "num_features": 99}
    )
    assert deeplob.num_lob_features == 8 and deeplob.lstm.hidden_size == 8
    logreg = instantiate_network(LogisticRegressionLOB, **OFFERED)
    assert logreg.head.in_features == 24 * 12 and logreg.head.out_features == 2 * 3


@pytest.mark.parametrize("num_horizons", [1, 3])
@pytest.mark.parametrize("cls", list(SMALL), ids=lambda c: c.__name__)
def test_output_shape(cls: type[LOBNetwork], num_horizons: int) -> None:
    model = SMALL[cls](12, 24, num_horizons)
    out = model(torch.randn(5, 24, 12))
    assert out.shape == (5, num_horizons, 3)
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="expected x of shape"):
        model(torch.randn(5, 23, 12))


def test_tlob_default_sizes_and_batch_of_one() -> None:
    model = TLOB(num_features=40, seq_len=100, num_horizons=4)  # hidden_dim 40, 4 pairs, 1 head
    assert model(torch.randn(1, 100, 40)).shape == (1, 4, 3)
    assert "pos" not in model.state_dict()  # fixed positions are a non-persistent buffer
    assert any(k.startswith("bin.") for k in model.state_dict())  # the task's resizable_keys


def test_hidden_dim_is_honoured() -> None:
    model = TLOB(num_features=12, seq_len=16, hidden_dim=32, num_layers=2)
    assert model.embed.weight.shape == (32, 12)
    assert [layer.attn.mixer.dim for layer in model.layers] == [32, 16, 32, 16]
    # The last pair shrinks H = 32 -> 8 and T = 16 -> 4; the head sees 4 * 8 = 32 <= 128: one Linear.
    assert model.layers[2].mlp.fc2.weight.shape == (8, 4 * 32)
    assert model.layers[3].mlp.fc2.weight.shape == (4, 4 * 16)
    assert [m.weight.shape for m in model.head if isinstance(m, nn.Linear)] == [(3, 32)]
    assert model(torch.randn(2, 16, 12)).shape == (2, 1, 3)

    mixer = MLPLOB(num_features=12, seq_len=16, hidden_dim=32, num_layers=2)
    assert mixer.embed.weight.shape == (32, 12)
    assert mixer.feature_mlps[0].fc1.weight.shape == (128, 32)
    assert mixer.feature_mlps[1].fc2.weight.shape == (8, 64)
    assert mixer.time_mlps[1].fc2.weight.shape == (4, 32)
    assert mixer(torch.randn(2, 16, 12)).shape == (2, 1, 3)


@pytest.mark.parametrize(
    ("build", "argument"),
    [
        (lambda: TLOB(num_features=12, seq_len=18), "seq_len"),
        (lambda: TLOB(num_features=12, seq_len=16, hidden_dim=30), "hidden_dim"),
        (lambda: TLOB(num_features=12, seq_len=16, hidden_dim=12, num_heads=8), "hidden_dim"),
        (lambda: TLOB(num_features=12, seq_len=20, hidden_dim=16, num_heads=8), "seq_len"),
        (lambda: TLOB(num_features=12, seq_len=16, num_layers=0), "num_layers"),
        (lambda: TLOB(num_features=12, seq_len=16, num_heads=0), "num_heads"),
        (lambda: TLOB(num_features=12, seq_len=16, num_horizons=0), "num_horizons"),
        (lambda: TLOB(num_features=12, seq_len=16, dropout=1.0), "dropout"),
        (lambda: MLPLOB(num_features=12, seq_len=18), "seq_len"),
        (lambda: MLPLOB(num_features=12, seq_len=16, hidden_dim=42), "hidden_dim"),
        (lambda: MLPLOB(num_features=12, seq_len=16, num_classes=1), "num_classes"),
        (lambda: DeepLOB(num_lob_features=42, seq_len=100), "num_lob_features"),
        (lambda: DeepLOB(num_lob_features=0, seq_len=100), "num_lob_features"),
        (lambda: DeepLOB(num_lob_features=40, seq_len=18), "seq_len"),
        (lambda: LogisticRegressionLOB(num_features=0, seq_len=10), "num_features"),
        (lambda: BiN(num_features=1, seq_len=10), "num_features"),
    ],
)
def test_bad_hyper_parameters_raise(build: Callable[[], nn.Module], argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        build()


def test_custom_heads_do_not_need_num_heads_divisibility() -> None:
    # num_heads only configures the default attention; a factory brings its own heads.
    model = TLOB(
        12,
        16,
        hidden_dim=16,
        num_layers=1,
        num_heads=3,
        attention=functools.partial(MultiHeadAttention, num_heads=2),
    )
    assert {layer.attn.mixer.num_heads for layer in model.layers} == {2}


@pytest.mark.parametrize("cls", list(SMALL), ids=lambda c: c.__name__)
def test_overfits_a_tiny_batch(cls: type[LOBNetwork]) -> None:
    name = cls.__name__
    x = torch.randn(32, 24, 12)
    y = torch.randint(0, 3, (32, 2))
    model = SMALL[cls](12, 24, 2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        opt.zero_grad()
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        opt.step()
        if loss.item() < 0.02:
            break
    model.eval()
    with torch.no_grad():
        logits = model(x)
    accuracy = (logits.argmax(-1) == y).float().mean().item()
    final = F.cross_entropy(logits.flatten(0, 1), y.flatten()).item()
    assert accuracy == 1.0, f"{name}: train accuracy {accuracy:.3f}, loss {final:.4f}"
    assert final < 0.1, f"{name}: train loss {final:.4f}"


def test_injected_multi_head_attention_changes_heads() -> None:
    one = TLOB(12, 16, hidden_dim=16, num_layers=2)
    two = TLOB(
        12, 16, hidden_dim=16, num_layers=2, attention=functools.partial(MultiHeadAttention, num_heads=2)
    )
    assert {layer.attn.mixer.num_heads for layer in one.layers} == {1}
    assert {layer.attn.mixer.num_heads for layer in two.layers} == {2}
    assert two(torch.randn(3, 16, 12)).shape == (3, 1, 3)


class RecordingMixer(TokenMixer):
    """A mean-pooling token mixer that records how it was built and what it saw."""

    built: list[tuple[int, int, int]] = []  # noqa: RUF012 - class-level log shared by the instances
    seen: list[tuple[int, tuple[int, ...]]] = []  # noqa: RUF012

    def __init__(self, dim: int, *, layer_idx: int = 0, num_layers: int = 1) -> None:
        super().__init__(dim, layer_idx=layer_idx, num_layers=num_layers)
        self.proj = nn.Linear(dim, dim)
        RecordingMixer.built.append((dim, layer_idx, num_layers))

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        RecordingMixer.seen.append((self.layer_idx, tuple(x.shape)))
        return self.proj(x.mean(dim=1, keepdim=True).expand_as(x))


def test_custom_token_mixer_gets_dims_and_layer_indices() -> None:
    RecordingMixer.built.clear()
    RecordingMixer.seen.clear()
    f, t, h, layers = 12, 16, 20, 3
    model = TLOB(f, t, hidden_dim=h, num_layers=layers, attention=RecordingMixer)
    assert RecordingMixer.built == [(h if i % 2 == 0 else t, i, 2 * layers) for i in range(2 * layers)]
    model(torch.randn(2, t, f)).sum().backward()
    # Temporal mixers see T tokens of H channels; feature mixers see H tokens (H/4 in the last pair) of T.
    expected = []
    for i in range(2 * layers):
        last = i >= 2 * layers - 2
        expected.append((i, (2, t, h) if i % 2 == 0 else (2, h // 4 if last else h, t)))
    assert RecordingMixer.seen == expected
    assert all(layer.attn.mixer.proj.weight.grad is not None for layer in model.layers)


def test_temporal_attention_mixes_time_steps() -> None:
    d, t = 16, 10
    x = torch.randn(2, t, d)
    x2 = x.clone()
    x2[:, 4] += 1.0
    layer = TransformerLayer(MultiHeadAttention(d, num_heads=1), "time", d).eval()
    out, out2 = layer(x), layer(x2)
    others = [i for i in range(t) if i != 4]
    assert not torch.allclose(out[:, others], out2[:, others]), "other time steps must see the change"

    # The same layer over features mixes features of one time step and never across time steps.
    feature_layer = TransformerLayer(MultiHeadAttention(t, num_heads=1), "feature", t).eval()
    y = torch.randn(2, t, d)
    y2 = y.clone()
    y2[:, :, 3] += 1.0
    out, out2 = feature_layer(y), feature_layer(y2)
    assert out.shape == (2, t, d)
    assert not torch.allclose(out[:, :, [0, 1, 2, 4]], out2[:, :, [0, 1, 2, 4]])

    model = TLOB(12, 16, hidden_dim=16, num_layers=2).eval()
    z = torch.randn(2, 16, 12)
    z2 = z.clone()
    z2[:, 7] += 1.0
    assert not torch.allclose(model(z), model(z2))


def test_parameter_counts_fi2010(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(repo))  # `benchmarks` is not an installed package
    from benchmarks.tlob_throughput import OfficialStyleTLOB

    ours = sum(p.numel() for p in TLOB(num_features=144, seq_len=128, hidden_dim=144).parameters())
    official = sum(p.numel() for p in OfficialStyleTLOB(num_features=144, seq_len=128).parameters())
    mlplob = sum(p.numel() for p in MLPLOB(num_features=144, seq_len=384, hidden_dim=144).parameters())
    print(f"FI-2010 parameters: TLOB ours {ours:,}, official-style {official:,}; MLPLOB (T=384) {mlplob:,}")
    assert ours < official
    assert official == pytest.approx(2.66e6, rel=0.01)  # the seed notes' count of the official model
    assert mlplob == pytest.approx(6.33e6, rel=0.01)


def _bin_reference(x: list, l1: list, b1: list, l2: list, b2: list, y1: float, y2: float) -> list:
    """Per-element BiN with Python floats: unbiased std, std < 1e-4 replaced by 1 in both branches."""

    def zscore(values: list[float], v: float) -> float:
        n = len(values)
        mean = sum(values) / n
        std = math.sqrt(sum((u - mean) ** 2 for u in values) / (n - 1))
        return (v - mean) / (std if std >= 1e-4 else 1.0)

    out = []
    for sample in x:
        nf, nt = len(sample), len(sample[0])
        rows = []
        for f in range(nf):
            row = []
            for t in range(nt):
                over_time = sample[f]
                over_features = [sample[g][t] for g in range(nf)]
                x2 = l2[f] * zscore(over_time, sample[f][t]) + b2[f]
                x1 = l1[t] * zscore(over_features, sample[f][t]) + b1[t]
                row.append(y1 * x1 + y2 * x2)
            rows.append(row)
        out.append(rows)
    return out


def test_bin_matches_literal_reference() -> None:
    f, t = 5, 7
    bin_ = BiN(f, t).double()
    with torch.no_grad():
        for p in (bin_.B1, bin_.B2):
            p.normal_()
        bin_.y1.fill_(0.3)
        bin_.y2.fill_(0.8)
    x = torch.randn(3, f, t, dtype=torch.float64)
    x[0, 2, :] = 1.5  # constant feature row: temporal std 0 -> 1
    x[1, :, 4] = -0.7  # constant time column: feature std 0 -> 1
    expected = _bin_reference(
        x.tolist(),
        bin_.l1.flatten().tolist(),
        bin_.B1.flatten().tolist(),
        bin_.l2.flatten().tolist(),
        bin_.B2.flatten().tolist(),
        0.3,
        0.8,
    )
    out = bin_(x)
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=1e-10)
    assert torch.isfinite(out).all()


def test_bin_initialisation() -> None:
    bin_ = BiN(144, 128)
    assert bin_.y1.item() == bin_.y2.item() == 0.5
    assert bin_.l1.shape == (128, 1) and bin_.l2.shape == (144, 1)
    assert not bin_.B1.any() and not bin_.B2.any()
    assert bin_.l2.std().item() == pytest.approx(math.sqrt(2 / 145), rel=0.3)  # xavier-normal


def test_bin_clamps_negative_weights_without_replacing_parameters() -> None:
    bin_ = BiN(4, 6)
    params = list(bin_.parameters())
    x = torch.randn(2, 4, 6)
    with torch.no_grad():
        bin_.y1.fill_(-0.5)
    out = bin_(x)
    with torch.no_grad():
        bin_.y1.fill_(0.01)
    torch.testing.assert_close(out, bin_(x))  # the forward pass used max(y1, 0.01)
    with torch.no_grad():
        bin_.y1.fill_(-0.5)
    bin_(x).pow(2).sum().backward()
    assert bin_.y1.grad is not None and bin_.y1.grad.abs().item() > 0  # straight-through: it can recover
    assert bin_.y1.item() == -0.5  # the parameter itself is untouched ...
    assert list(bin_.parameters()) == params  # ... and still the optimizer's object


@pytest.mark.parametrize("levels", [1, 10])
def test_deeplob_any_number_of_levels(levels: int) -> None:
    lob = 4 * levels
    model = DeepLOB(num_lob_features=lob, seq_len=24, num_horizons=2).eval()
    x = torch.randn(3, 24, lob + 6)  # extra (order) features after the book are ignored
    out = model(x)
    assert out.shape == (3, 2, 3)
    x2 = x.clone()
    x2[..., lob:] = 100.0
    torch.testing.assert_close(model(x2), out)
    assert model.block3[0].kernel_size == (1, levels)
    with pytest.raises(ValueError, match="expected x of shape"):
        model(torch.randn(3, 24, lob - 1))


def test_deeplob_minimum_length() -> None:
    assert DeepLOB(num_lob_features=40, seq_len=19)(torch.randn(2, 19, 40)).shape == (2, 1, 3)
