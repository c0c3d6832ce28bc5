"""IGR-SR: shapes, the frozen SASRec encoder, loading SASRec weights, the LID, ICR and a tiny overfit."""

import functools
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from core.attention import CrossAttention, MultiHeadAttention
from domains.recsys.models.igrsr import IGRSR, intent_info_nce, mask_views
from domains.recsys.models.sasrec import SASRec

pytestmark = pytest.mark.filterwarnings("ignore:IGRSR. training with a frozen encoder:UserWarning")

NUM_ITEMS, MAX_LEN, DIM = 30, 8, 16


def small(**kwargs) -> IGRSR:
    config = {"hidden_dim": DIM, "num_heads": 2, "dropout": 0.0}
    return IGRSR(NUM_ITEMS, MAX_LEN, **(config | kwargs))


def histories(batch: int = 5, length: int = MAX_LEN, seed: int = 0) -> torch.Tensor:
    """Left-padded histories with 2..length items."""
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, NUM_ITEMS + 1, (batch, length), generator=g)
    for row in range(batch):
        pad = int(torch.randint(0, length - 1, (1,), generator=g))
        items[row, :pad] = 0
    return items


def sasrec_state(prefix: str = "") -> tuple[SASRec, dict[str, torch.Tensor]]:
    torch.manual_seed(123)
    sasrec = SASRec(NUM_ITEMS, MAX_LEN, hidden_dim=DIM, num_heads=2, dropout=0.0).eval()
    return sasrec, {prefix + k: v.clone() for k, v in sasrec.state_dict().items()}


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"num_prefix": 0, "num_intents": 1, "reasoner_layers": 1},
        {"num_reasoning_tokens": 3, "residual": False, "output_table": "finetune"},
    ],
)
def test_shapes(kwargs: dict) -> None:
    model = small(**kwargs).eval()
    items = histories()
    user = model.user_vector(items)
    assert user.shape == (5, DIM)
    assert model.scores(user).shape == (5, NUM_ITEMS + 1)
    assert model.encode(items).shape == (5, MAX_LEN, DIM)
    assert model.intents(items).shape == (5, model.num_intents, DIM)
    assert model.output_embedding().shape == (NUM_ITEMS + 1, DIM)
    assert torch.isfinite(model.scores(user)).all()
    assert model.objective == "last"


def test_shorter_window_and_padding_give_the_same_prediction() -> None:
    """Right-aligned positions + key padding: extra left padding changes nothing (LID and reasoner)."""
    model = small().eval()
    with torch.no_grad():
        model.gate.fill_(0.7)
    items = histories(length=5)
    padded = torch.cat([torch.zeros(5, 3, dtype=torch.long), items], dim=1)
    torch.testing.assert_close(model.intents(padded), model.intents(items))
    torch.testing.assert_close(model.user_vector(padded), model.user_vector(items))


def test_frozen_encoder_stays_frozen_through_training() -> None:
    model = small()
    model.train()
    assert model.training and not model.encoder.training
    assert all(not module.training for module in model.encoder.modules())
    assert not any(p.requires_grad for p in model.encoder.parameters())
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert "prefix_tokens" in trainable and "intent_tokens" in trainable and "gate" in trainable
    assert not any(n.startswith("encoder.") for n in trainable)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    items = histories()
    for _ in range(2):
        loss, _ = model.training_loss(items[:, :-1], items[:, -1])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for k, v in model.encoder.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0, msg=k)
    assert all(p.grad is None for p in model.encoder.parameters())
    for name in ("prefix_tokens", "intent_tokens", "gate", "reasoning_tokens"):
        assert not torch.equal(dict(model.named_parameters())[name], trainable[name]), name
    model.eval()
    model.train()
    assert not model.encoder.training


def test_unfrozen_encoder_trains() -> None:
    model = small(freeze_encoder=False)
    model.train()
    assert model.encoder.training
    assert all(p.requires_grad for p in model.encoder.parameters())
    items = histories()
    loss, _ = model.training_loss(items[:, :-1], items[:, -1])
    loss.backward()
    assert model.item_embedding.weight.grad is not None


def test_warns_when_training_a_frozen_random_encoder() -> None:
    model = small()
    with pytest.warns(UserWarning, match="never loaded"):
        model.train()
    _, state = sasrec_state()
    model.load_encoder_state(state)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.train()


@pytest.mark.parametrize("prefix", ["", "network.", "model.", "model.network."])
def test_load_sasrec_state_dict(prefix: str) -> None:
    sasrec, state = sasrec_state(prefix)
    state[prefix + "some_other_tensor"] = torch.zeros(3)
    model = small(output_table="finetune")
    report = model.load_encoder_state(state)
    assert sorted(report.loaded) == sorted(sasrec.state_dict())
    assert report.missing == []
    assert list(report.skipped) == [prefix + "some_other_tensor"]
    assert bool(model.encoder_loaded)
    items = histories()
    torch.testing.assert_close(model.encode(items), sasrec.encode(items))
    torch.testing.assert_close(model.output_embedding(), sasrec.item_emb.weight)
    # Gate 0 at initialisation: IGR-SR starts from the pre-trained SASRec's prediction.
    model.eval()
    torch.testing.assert_close(model.user_vector(items), sasrec.user_vector(items))
    torch.testing.assert_close(
        model.scores(model.user_vector(items)), sasrec.scores(sasrec.user_vector(items))
    )
    # The encoder is still frozen after loading.
    assert not any(p.requires_grad for p in model.encoder.parameters())


def test_load_igrsr_checkpoint_state_and_restore_flag() -> None:
    _, state = sasrec_state("network.")
    source = small()
    source.load_encoder_state(state)
    saved = {"network." + k: v for k, v in source.state_dict().items()}
    target = small()
    report = target.load_encoder_state(saved)
    assert report.missing == [] and "network.prefix_tokens" in report.skipped
    fresh = small()
    fresh.load_state_dict(source.state_dict())
    assert bool(fresh.encoder_loaded)


def test_load_rejects_wrong_shapes_and_partial_state() -> None:
    _, state = sasrec_state("network.")
    wrong = IGRSR(NUM_ITEMS, MAX_LEN, hidden_dim=8, num_heads=2)
    with pytest.raises(ValueError, match=r"network\.item_emb\.weight.*shape"):
        wrong.load_encoder_state(state)
    partial = {k: v for k, v in state.items() if "blocks.1" not in k}
    with pytest.raises(ValueError, match="missing"):
        small().load_encoder_state(partial)


def test_intents_depend_on_the_whole_sequence() -> None:
    model = small().eval()
    items = torch.randint(3, NUM_ITEMS + 1, (2, MAX_LEN), generator=torch.Generator().manual_seed(2))
    items[:, 0] = 1  # the oldest item, in the first position
    changed = items.clone()
    changed[:, 0] = 2
    base = model.intents(items)
    assert not torch.allclose(base[0], base[1])
    # Intent tokens come after the items, so even the oldest item reaches every intent.
    diff = (model.intents(changed) - base).abs().amax(dim=-1)
    assert (diff > 1e-6).all()
    # The user vector follows through the reasoner (residual=False: without SASRec's last state).
    literal = small(residual=False).eval()
    assert not torch.allclose(literal.user_vector(items), literal.user_vector(changed))


def reference_info_nce(first: torch.Tensor, second: torch.Tensor, tau: float) -> float:
    """Literal fp64 loops: mean over intents, users and both directions of -log softmax of the positive."""
    first, second = first.double(), second.double()
    b, k, _ = first.shape
    total = 0.0
    for j in range(k):
        for a, c in ((first, second), (second, first)):
            for u in range(b):
                sims = []
                for v in range(b):
                    x, y = a[u, j], c[v, j]
                    sims.append(float(x @ y) / (math.sqrt(float(x @ x)) * math.sqrt(float(y @ y))) / tau)
                top = max(sims)
                log_den = top + math.log(sum(math.exp(s - top) for s in sims))
                total += -(sims[u] - log_den)
    return total / (2 * k * b)


def test_info_nce_matches_literal_reference() -> None:
    g = torch.Generator().manual_seed(1)
    first = torch.randn(5, 3, 7, generator=g, dtype=torch.float64)
    second = first + 0.3 * torch.randn(5, 3, 7, generator=g, dtype=torch.float64)
    for tau in (0.2, 1.0):
        got = intent_info_nce(first, second, tau)
        assert got.dtype == torch.float64
        assert abs(float(got) - reference_info_nce(first, second, tau)) < 1e-10
    assert float(intent_info_nce(first[:1], second[:1], 0.2)) == 0.0
    # Perfectly aligned, well-separated intents: the loss is near zero.
    eye = torch.eye(4, dtype=torch.float64)[:, None, :].expand(4, 2, 4)
    assert float(intent_info_nce(eye, eye, 0.05)) < 1e-6
    with pytest.raises(ValueError, match="same shape"):
        intent_info_nce(first, second[:, :2], 0.2)


def test_mask_views_deterministic_and_valid() -> None:
    items = histories(batch=64, length=MAX_LEN)
    a = mask_views(items, 0.5, generator=torch.Generator().manual_seed(7))
    b = mask_views(items, 0.5, generator=torch.Generator().manual_seed(7))
    c = mask_views(items, 0.5, generator=torch.Generator().manual_seed(8))
    assert len(a) == 2
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(a[0], a[1])  # the two views are drawn independently
    real = items > 0
    for view in a:
        assert ((view == items) | (view == 0)).all()  # items are only dropped, never replaced
        assert (view[~real] == 0).all()
        assert ((view > 0).sum(1) >= 1).all()
    fraction = 1 - (a[0] > 0).sum() / real.sum()
    assert 0.35 < float(fraction) < 0.65
    heavy = mask_views(items, 0.99, generator=torch.Generator().manual_seed(0))
    for view in heavy:
        assert ((view > 0).sum(1) >= 1).all()
    assert torch.equal(mask_views(items, 0.0)[0], items)


def test_extra_loss_is_weighted_info_nce_of_the_masked_views() -> None:
    model = small(icr_weight=0.5, icr_mask_ratio=0.3).eval()
    items = histories()
    got = model.extra_loss(items, generator=torch.Generator().manual_seed(3))
    first, second = mask_views(items, 0.3, generator=torch.Generator().manual_seed(3))
    want = 0.5 * intent_info_nce(model.intents(first), model.intents(second), model.icr_temperature)
    torch.testing.assert_close(got, want)
    off = small(icr_weight=0.0)
    assert float(off.extra_loss(items)) == 0.0


def test_cross_attention_injection_and_validation() -> None:
    model = small(cross_attention=functools.partial(CrossAttention, num_heads=4))
    assert model.reasoner[0].attn_intent.num_heads == 4
    assert model.reasoner[1].attn_seq.layer_idx == 3 and model.reasoner[1].attn_seq.num_layers == 4
    with pytest.raises(ValueError, match="does not take `context`"):
        small(cross_attention=functools.partial(MultiHeadAttention, num_heads=2))
    with pytest.raises(ValueError, match="num_intents"):
        small(num_intents=0)
    with pytest.raises(ValueError, match="icr_mask_ratio"):
        small(icr_mask_ratio=1.0)
    with pytest.raises(ValueError, match="item ids"):
        small().user_vector(torch.full((2, 3), NUM_ITEMS + 1))


@pytest.mark.parametrize("freeze_encoder", [True, False])
def test_overfits_a_tiny_batch(freeze_encoder: bool) -> None:
    """8 sequences: the reasoner (with a random frozen encoder, or end to end) learns each next item."""
    torch.manual_seed(0)
    model = small(freeze_encoder=freeze_encoder, reasoner_layers=1)
    batch = histories(batch=8, length=MAX_LEN + 1, seed=5)
    inputs, targets = batch[:, :-1], batch[:, -1]
    # The frozen, random item table is small, so the user vector's scale (the residual gate) must grow.
    lr = 3e-2 if freeze_encoder else 1e-2
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for step in range(300):
        loss, logs = model.training_loss(inputs, targets, generator=torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if float(logs["ce"]) < 0.05:
            break
    model.eval()
    with torch.no_grad():
        logits = model.scores(model.user_vector(inputs))
        ce = F.cross_entropy(logits[:, 1:], targets - 1)
    assert (logits[:, 1:].argmax(1) + 1 == targets).all(), f"step {step}, ce {float(ce):.3f}"
    assert float(ce) < 0.1


@pytest.mark.parametrize("as_run_folder", [False, True])
def test_task_trains_igrsr_on_a_sasrec_checkpoint(tmp_path, as_run_folder: bool) -> None:
    """The recsys task's contract: encoder_checkpoint -> load_encoder_state; CE(last) + extra_loss."""
    from domains.recsys.module import SequentialRecommendation

    sizes = {"num_items": NUM_ITEMS, "max_len": MAX_LEN}
    options = {"hidden_dim": DIM, "num_heads": 2, "dropout": 0.0}
    sasrec = SequentialRecommendation(network=functools.partial(SASRec, **options), **sizes)
    if as_run_folder:  # a run's default_root_dir: its best checkpoint, read from last.ckpt
        best = tmp_path / "checkpoints" / "epoch=0-step=1.ckpt"
        best.parent.mkdir()
        torch.save({"state_dict": sasrec.state_dict()}, best)
        callbacks = {"TaskCheckpoint{}": {"best_model_path": str(best)}}
        torch.save({"state_dict": {}, "callbacks": callbacks}, tmp_path / "checkpoints" / "last.ckpt")
        path = tmp_path
    else:
        path = tmp_path / "sasrec.ckpt"
        torch.save({"state_dict": sasrec.state_dict()}, path)
    igrsr = functools.partial(IGRSR, encoder_checkpoint=str(path), **options)
    task = SequentialRecommendation(network=igrsr, **sizes)
    network = task.network
    assert isinstance(network, IGRSR) and bool(network.encoder_loaded)
    torch.testing.assert_close(network.output_embedding(), sasrec.network.item_emb.weight)
    task.train()
    assert not network.encoder.training
    batch = {"items": histories(batch=4, length=MAX_LEN + 1), "user": torch.arange(4)}
    torch.manual_seed(1)  # the ICR views are drawn from the global generator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer
        loss = task.training_step(batch, 0)
    torch.manual_seed(1)
    expected, _ = network.training_loss(batch["items"][:, :-1], batch["items"][:, -1])
    torch.testing.assert_close(loss, expected)  # CE at the last position + λ·InfoNCE
    loss.backward()
    assert network.prefix_tokens.grad is not None and network.gate.grad is not None
    assert all(p.grad is None for p in network.encoder.parameters())


def test_igrsr_refuses_the_sampled_bce_loss() -> None:
    from domains.recsys.module import SequentialRecommendation

    igrsr = functools.partial(IGRSR, hidden_dim=DIM, num_heads=2, freeze_encoder=False)
    with pytest.raises(ValueError, match="loss='bce' needs a causal network"):
        SequentialRecommendation(network=igrsr, num_items=NUM_ITEMS, max_len=MAX_LEN, loss="bce")
