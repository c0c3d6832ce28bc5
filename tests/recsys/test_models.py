"""Sequential-recommendation models: shapes, padding invariance, causality, attention swap, overfitting."""

import functools
from collections.abc import Sequence

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention import NeighborhoodAttention, TokenMixer
from core.training.networks import instantiate_network
from domains.recsys.models import (
    IGRSR,
    BERT4Rec,
    GRU4Rec,
    PopularityRecommender,
    SASRec,
    SeqRecNetwork,
)

NUM_ITEMS = 20
MAX_LEN = 10


pytestmark = pytest.mark.usefixtures("one_thread")


NETWORKS: dict[str, type[SeqRecNetwork]] = {
    "sasrec": SASRec,
    "bert4rec": BERT4Rec,
    "igrsr": IGRSR,
    "gru4rec": GRU4Rec,
    "pop": PopularityRecommender,
}


def small(name: str, **kwargs) -> nn.Module:
    """A small, dropout-free network of the given kind."""
    defaults = {"hidden_dim": 32, "dropout": 0.0}
    if name == "gru4rec":
        defaults["gru_dim"] = 32
    return NETWORKS[name](NUM_ITEMS, MAX_LEN, **(defaults | kwargs))


def left_pad(rows: Sequence[Sequence[int]], length: int) -> Tensor:
    return torch.tensor([[0] * (length - len(r)) + list(r) for r in rows], dtype=torch.long)


def history() -> Tensor:
    return left_pad([[3, 1, 4, 1, 5, 9], [2, 6], [5, 3, 5, 8, 9, 7, 9, 3]], 8)


SEQ_MODELS = ["sasrec", "bert4rec", "gru4rec"]


def test_networks_share_the_base_class_and_objectives() -> None:
    assert all(issubclass(cls, SeqRecNetwork) for cls in NETWORKS.values())
    assert SASRec.objective == "causal" and GRU4Rec.objective == "causal"
    assert BERT4Rec.objective == "cloze" and IGRSR.objective == "last"
    assert PopularityRecommender.objective == "none"


@pytest.mark.parametrize("name", list(NETWORKS))
def test_networks_take_only_the_sizes_they_declare(name: str) -> None:
    """The task offers num_items and max_len (and attention); each network gets what its __init__ names."""
    kwargs = {"freeze_encoder": False} if name == "igrsr" else {}
    factory = functools.partial(NETWORKS[name], **kwargs)
    network = instantiate_network(factory, num_items=NUM_ITEMS, max_len=MAX_LEN, unknown_size=3)
    assert isinstance(network, NETWORKS[name])
    assert (network.num_items, network.max_len) == (NUM_ITEMS, MAX_LEN)
    attention = functools.partial(NeighborhoodAttention, num_heads=1, kernel_size=3)
    if name in ("gru4rec", "pop"):
        with pytest.raises(ValueError, match="has no attention to replace"):
            instantiate_network(factory, attention=attention, num_items=NUM_ITEMS, max_len=MAX_LEN)


@pytest.mark.parametrize("name", SEQ_MODELS)
def test_shapes(name: str) -> None:
    model = small(name).eval()
    items = history()
    hidden = model.encode(items)
    assert hidden.shape == (3, 8, 32)
    assert model.scores(hidden).shape == (3, 8, NUM_ITEMS + 1)
    assert model.user_vector(items).shape == (3, 32)
    assert model.scores(model.user_vector(items)).shape == (3, NUM_ITEMS + 1)
    assert torch.isfinite(hidden).all()


@pytest.mark.parametrize("name", SEQ_MODELS)
def test_left_padding_invariance(name: str) -> None:
    model = small(name).eval()
    items = history()
    padded = torch.cat([torch.zeros(3, 2, dtype=torch.long), items], dim=1)
    torch.testing.assert_close(model.encode(padded)[:, -1], model.encode(items)[:, -1], atol=1e-5, rtol=0)
    # Every real position, not only the last, is unchanged.
    real = items > 0
    close = functools.partial(torch.testing.assert_close, atol=1e-5, rtol=0)
    close(model.encode(padded)[:, 2:][real], model.encode(items)[real])
    # user_vector too: a batch padded only to its longest history (SeqRecDataModule's pad_to="batch")
    # predicts exactly what the full max_len window predicts. BERT4Rec drops the oldest column of a full
    # window to append its mask token and keeps it in a shorter one (row 2 fills 8 of the 10 columns).
    close(model.user_vector(padded), model.user_vector(items))


@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_causality(name: str) -> None:
    model = small(name).eval()
    items = history()
    changed = items.clone()
    changed[:, 5:] = torch.randint(1, NUM_ITEMS + 1, (3, 3))
    torch.testing.assert_close(model.encode(changed)[:, :5], model.encode(items)[:, :5], atol=1e-6, rtol=0)
    assert not torch.allclose(model.encode(changed)[:, 5:], model.encode(items)[:, 5:])


def test_bert4rec_is_bidirectional() -> None:
    model = small("bert4rec").eval()
    items = history()
    changed = items.clone()
    changed[:, -1] = items[:, -1] % NUM_ITEMS + 1
    delta = (model.encode(changed)[:, -3] - model.encode(items)[:, -3]).abs().amax()
    assert delta > 1e-4


def test_bert4rec_vocabulary_and_user_vector() -> None:
    model = small("bert4rec", mask_prob=0.4).eval()
    assert model.mask_prob == 0.4 and model.mask_token == NUM_ITEMS + 1
    assert model.item_emb.num_embeddings == NUM_ITEMS + 2
    mask = torch.full((3, 1), model.mask_token)
    items = history()  # shorter than max_len: the mask token is appended
    appended = torch.cat([items, mask], dim=1)
    torch.testing.assert_close(model.user_vector(items), model.encode(appended)[:, -1])
    full = left_pad([[3, 1, 4, 1, 5, 9, 2, 6, 5, 3]] * 3, MAX_LEN)  # a full window drops its oldest item
    shifted = torch.cat([full[:, 1:], mask], dim=1)
    torch.testing.assert_close(model.user_vector(full), model.encode(shifted)[:, -1])


def test_sasrec_encode_is_transform_of_embed() -> None:
    model = small("sasrec").eval()
    items = history()
    expected = model.transform(model.embed(items), key_padding=items > 0, is_causal=True)
    torch.testing.assert_close(model.encode(items), expected, atol=0, rtol=0)
    assert model.embed(items).shape == (3, 8, 32)
    assert (model.encode(items)[items == 0] == 0).all()
    # transform takes more tokens than max_len (IGR-SR's prefix and intent tokens).
    h = torch.randn(2, MAX_LEN + 5, 32)
    assert model.transform(h, key_padding=torch.ones(2, MAX_LEN + 5, dtype=torch.bool)).shape == h.shape


def test_sasrec_output_embedding_is_tied() -> None:
    model = small("sasrec")
    hidden = torch.randn(4, 32)
    torch.testing.assert_close(model.scores(hidden), hidden @ model.item_emb.weight.T)
    assert model.output_embedding() is model.item_emb.weight


@pytest.mark.parametrize("tie", [True, False])
def test_gru4rec_output_layer(tie: bool) -> None:
    model = small("gru4rec", tie_weights=tie)
    assert (model.output is None) == tie
    table = model.output_embedding()
    assert table.shape == (NUM_ITEMS + 1, 32)
    assert (table is model.item_emb.weight) == tie
    assert model.scores(torch.randn(4, 32)).shape == (4, NUM_ITEMS + 1)


@pytest.mark.parametrize("name", ["sasrec", "bert4rec", "gru4rec", "igrsr"])
def test_output_layer_gives_the_scores(name: str) -> None:
    """The chunked training CE uses output_layer(); it must be the very layer scores() applies."""
    kwargs = {"freeze_encoder": False} if name == "igrsr" else {}
    model = small(name, **kwargs)
    hidden = torch.randn(4, 32)
    weight, bias = model.output_layer()
    expected = hidden @ weight.T + (0 if bias is None else bias)
    torch.testing.assert_close(model.scores(hidden), expected)


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_attention_swap(name: str) -> None:
    attention = functools.partial(NeighborhoodAttention, num_heads=1, kernel_size=3)
    model = small(name, attention=attention).eval()
    assert all(isinstance(block.attn, NeighborhoodAttention) for block in model.blocks)
    items = history()
    hidden = model.encode(items)
    assert hidden.shape == (3, 8, 32) and torch.isfinite(hidden).all()
    loss = model.scores(hidden).logsumexp(-1).mean()
    loss.backward()


class _NonCausal(TokenMixer):
    def mix(self, x: Tensor, **kwargs) -> Tensor:
        return x


def test_validation_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="num_heads"):
        SASRec(NUM_ITEMS, MAX_LEN, hidden_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="dropout"):
        BERT4Rec(NUM_ITEMS, MAX_LEN, dropout=1.0)
    with pytest.raises(ValueError, match="mask_prob"):
        BERT4Rec(NUM_ITEMS, MAX_LEN, mask_prob=0.0)
    with pytest.raises(ValueError, match="num_items"):
        GRU4Rec(0, MAX_LEN)
    with pytest.raises(ValueError, match="is_causal"):
        SASRec(NUM_ITEMS, MAX_LEN, attention=_NonCausal)
    with pytest.raises(ValueError, match="max_len"):
        small("sasrec").encode(torch.ones(2, MAX_LEN + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="items"):
        small("gru4rec").encode(torch.ones(2, 3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="key_padding"):
        small("sasrec").transform(torch.randn(2, 3, 32), key_padding=torch.ones(2, 3))


def test_popularity() -> None:
    model = PopularityRecommender(NUM_ITEMS, MAX_LEN)
    assert list(model.parameters()) == []
    counts = torch.arange(NUM_ITEMS + 1, dtype=torch.float)
    model.fit(counts)
    assert model.counts[0] == 0
    items = history()
    assert model.encode(items).shape == (3, 8, 1)
    user = model.user_vector(items)
    assert user.shape == (3, 1)
    scores = model.scores(user)
    assert scores.shape == (3, NUM_ITEMS + 1)
    torch.testing.assert_close(scores[1], torch.log1p(counts.clone().index_fill_(0, torch.tensor([0]), 0)))
    assert scores[0].argmax() == NUM_ITEMS
    assert model.scores(model.encode(items)).shape == (3, 8, NUM_ITEMS + 1)
    with pytest.raises(ValueError, match="item_counts"):
        model.fit(torch.ones(NUM_ITEMS))


def _train_batch() -> Tensor:
    """8 sequences of up to 7 items (6 inputs + 1 target), distinct first items so every prefix is unique."""
    g = torch.Generator().manual_seed(1)
    firsts = torch.randperm(NUM_ITEMS, generator=g)[:8] + 1
    rows = []
    for i, first in enumerate(firsts.tolist()):
        rest = (torch.randperm(NUM_ITEMS, generator=g)[:6] + 1).tolist()
        rows.append([first, *rest][: 7 - (i % 3)])  # lengths 7, 6, 5: some rows are left-padded
    return left_pad(rows, 7)


@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_overfits_causal(name: str) -> None:
    model = small(name)
    batch = _train_batch()
    inputs, targets = batch[:, :-1], batch[:, 1:]
    # A target whose input is padding (the first item of a left-padded row) has no history: ignore it.
    targets = targets.masked_fill(inputs == 0, 0)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(300):
        logits = model.scores(model.encode(inputs))
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = model.scores(model.encode(inputs)).argmax(-1)
    real = targets > 0
    assert (pred[real] == targets[real]).all(), f"final loss {loss.item():.3f}"


def test_overfits_cloze() -> None:
    model = small("bert4rec", mask_prob=0.3)
    batch = _train_batch()
    g = torch.Generator().manual_seed(2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    real = batch > 0
    for step in range(300):
        if step % 2:  # the official "mask the last item" instances, as at evaluation
            masked = torch.zeros_like(real)
            masked[:, -1] = True
        else:
            masked = (torch.rand(batch.shape, generator=g) < model.mask_prob) & real
            masked[:, -1] |= ~masked.any(1)
        inputs = batch.masked_fill(masked, model.mask_token)
        logits = model.scores(model.encode(inputs))
        loss = F.cross_entropy(logits[masked], batch[masked])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        # Evaluation as in the official test data: [history, MASK] in the training window length.
        history = torch.cat([torch.zeros(8, 1, dtype=torch.long), batch[:, :-1]], dim=1)
        pred = model.scores(model.user_vector(history)).argmax(-1)
    assert (pred == batch[:, -1]).all(), f"final loss {loss.item():.3f}"
