"""Ranking helpers and RankingMetrics against brute force (sorting, explicit Python loops)."""

import math

import numpy as np
import pytest
import torch

from domains.recsys.metrics import RankingMetrics
from domains.recsys.ranking import full_ranking_scores, sampled_ranking_scores, target_rank, topk_items

INF = float("inf")
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def sort_rank(row: list[float], t: int) -> int:
    """Rank by a full sort: descending score, and among equal scores the target goes last (pessimistic)."""
    scores = np.asarray(row, dtype=np.float64)
    is_target = np.arange(len(row)) == t
    order = np.lexsort((is_target, -scores))  # last key is the primary one
    return int(np.nonzero(order == t)[0][0])


def loop_metrics(ranks: list[int], ks: tuple[int, ...]) -> dict[str, float]:
    n = len(ranks)
    out = {}
    for k in ks:
        out[f"hr@{k}"] = sum(1.0 for r in ranks if r < k) / n
    for k in ks:
        out[f"ndcg@{k}"] = sum(1.0 / math.log2(r + 2) for r in ranks if r < k) / n
    out["mrr"] = sum(1.0 / (r + 1) for r in ranks) / n
    out["count"] = float(n)
    return out


def tied_scores(b: int, m: int, *, levels: int = 4, p_inf: float = 0.1) -> torch.Tensor:
    """Few distinct values (many ties) and a sprinkle of -inf."""
    scores = torch.randint(0, levels, (b, m)).float()
    return scores.masked_fill(torch.rand(b, m) < p_inf, -INF)


# ----------------------------------------------------------------------------------------------- ranks
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(5))
def test_target_rank_matches_sort_with_ties(seed: int, device: str) -> None:
    g = torch.Generator().manual_seed(seed)
    b, m = 9, 17
    scores = tied_scores(b, m)
    target = torch.randint(0, m, (b,), generator=g)
    ranks = target_rank(scores.to(device), target.to(device)).cpu()
    assert ranks.dtype == torch.int64
    expected = [sort_rank(scores[i].tolist(), int(target[i])) for i in range(b)]
    assert ranks.tolist() == expected


def test_tie_policy_is_pessimistic_and_inf_target_is_worst() -> None:
    scores = torch.tensor(
        [
            [1.0, 1.0, 1.0, 1.0],  # constant scorer: worst rank, not 0
            [0.0, 2.0, 2.0, 1.0],  # one strictly higher + one tie -> 2
            [-INF, 5.0, -INF, -INF],  # masked target ties every -inf -> worst
            [-INF, -INF, 3.0, -INF],  # only finite score -> best
        ]
    )
    ranks = target_rank(scores, torch.tensor([2, 1, 0, 2]))
    assert ranks.tolist() == [3, 1, 3, 0]


def test_nan_never_flatters() -> None:
    nan = float("nan")
    scores = torch.tensor([[nan, 0.0, 1.0], [0.0, nan, 1.0]])
    # NaN target -> worst rank; a NaN competitor counts as above the target.
    assert target_rank(scores, torch.tensor([0, 2])).tolist() == [2, 1]


# ------------------------------------------------------------------------------------- history masking
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(4))
def test_full_ranking_masks_history_but_keeps_target(seed: int, device: str) -> None:
    g = torch.Generator().manual_seed(seed)
    b, num_items, s = 8, 15, 6
    scores = torch.randn(b, num_items + 1, generator=g)
    target = torch.randint(1, num_items + 1, (b,), generator=g)
    seen = torch.randint(1, num_items + 1, (b, s), generator=g)
    lengths = torch.randint(0, s + 1, (b,), generator=g)
    seen = seen.masked_fill(torch.arange(s)[None, :] < s - lengths[:, None], 0)  # left 0-padding
    seen[0, -1] = target[0]  # the target occurs in some histories
    seen[1, :] = 0  # an empty history
    original = scores.clone()

    masked = full_ranking_scores(scores.to(device), seen.to(device), target.to(device)).cpu()
    assert torch.equal(scores, original), "input scores must not be modified"
    ranks = target_rank(masked, target).tolist()
    for i in range(b):
        t = int(target[i])
        history = set(seen[i].tolist()) - {0}
        assert masked[i, 0] == -INF, "padding is always masked"
        assert masked[i, t] == scores[i, t], "the target keeps its score even when seen"
        for j in range(1, num_items + 1):
            if j in history and j != t:
                assert masked[i, j] == -INF
            elif j != t:
                assert masked[i, j] == scores[i, j]
        rankable = [j for j in range(1, num_items + 1) if j != t and j not in history]
        assert ranks[i] == sum(1 for j in rankable if scores[i, j] >= scores[i, t])


def test_seen_item_never_ranked_above_target_and_padding_never_ranked() -> None:
    scores = torch.tensor([[100.0, 1.0, 9.0, 8.0, 2.0]])  # padding and seen items score highest
    seen = torch.tensor([[0, 2, 3, 1]])  # target 1 is itself in the history
    masked = full_ranking_scores(scores, seen, torch.tensor([1]))
    assert target_rank(masked, torch.tensor([1])).tolist() == [1]  # only item 4 (unseen) beats it
    _, items = topk_items(masked, 5)
    assert items[0, :2].tolist() == [4, 1] and items[0, 2:].tolist() == [0, 0, 0]


def test_no_history_masking_only_masks_padding() -> None:
    scores = torch.tensor([[5.0, 1.0, 2.0, 3.0]])
    masked = full_ranking_scores(scores, None, torch.tensor([1]))
    assert masked[0, 0] == -INF and torch.equal(masked[0, 1:], scores[0, 1:])
    assert target_rank(masked, torch.tensor([1])).tolist() == [2]


def test_predict_target_zero_masks_whole_history_and_padding() -> None:
    scores = torch.tensor([[9.0, 4.0, 3.0, 2.0], [9.0, 4.0, 3.0, 2.0]])
    seen = torch.tensor([[0, 1], [3, 2]])
    masked = full_ranking_scores(scores, seen, torch.zeros(2, dtype=torch.long))
    expected = torch.tensor([[-INF, -INF, 3.0, 2.0], [-INF, 4.0, -INF, -INF]])
    assert torch.equal(masked, expected)
    assert torch.equal(full_ranking_scores(scores, seen), expected)


def test_low_precision_scores_keep_dtype() -> None:
    scores = torch.randn(2, 6).to(torch.bfloat16)
    masked = full_ranking_scores(scores, torch.tensor([[1, 2], [0, 3]]), torch.tensor([2, 4]))
    assert masked.dtype == torch.bfloat16 and masked[0, 1] == -INF and masked[0, 2] == scores[0, 2]


# ------------------------------------------------------------------------------------ sampled ranking
@pytest.mark.parametrize("seed", range(4))
def test_sampled_ranking_equals_full_ranking_restricted_to_candidates(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    b, num_items, c = 6, 30, 8
    scores = torch.randint(0, 5, (b, num_items + 1), generator=g).float()  # ties on purpose
    candidates = torch.stack([torch.randperm(num_items, generator=g)[:c] + 1 for _ in range(b)])
    target = candidates[:, 0]

    sampled = sampled_ranking_scores(scores, candidates)
    assert torch.equal(sampled[:, 0], scores.gather(1, target[:, None])[:, 0])
    ranks = target_rank(sampled, torch.zeros(b, dtype=torch.long))

    restricted = torch.full_like(scores, -INF)
    restricted.scatter_(1, candidates, scores.gather(1, candidates))
    # Non-candidates at -inf sit below every finite target score, so they do not change the rank.
    assert torch.equal(ranks, target_rank(restricted, target))
    for i in range(b):
        t = int(target[i])
        others = [int(j) for j in candidates[i, 1:]]
        assert ranks[i] == sum(1 for j in others if scores[i, j] >= scores[i, t])
        assert ranks[i] == sort_rank(sampled[i].tolist(), 0)


# --------------------------------------------------------------------------------------------- metrics
@pytest.mark.parametrize("seed", range(3))
def test_metrics_match_python_loops(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    ks = (1, 5, 10, 20)
    metric = RankingMetrics(ks)
    all_ranks: list[int] = []
    for b in (7, 1, 12):
        scores = tied_scores(b, 25)
        target = torch.randint(0, 25, (b,), generator=g)
        ranks = target_rank(scores, target)
        metric.update(ranks)
        all_ranks += ranks.tolist()
    got = metric.compute()
    expected = loop_metrics(all_ranks, ks)
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert got[key].dtype == torch.float32
        assert float(got[key]) == pytest.approx(value, abs=1e-6), key


def test_ks_larger_than_catalogue_all_hits() -> None:
    metric = RankingMetrics(ks=(3, 50), prefix="test_")
    scores = tied_scores(5, 4)  # a catalogue of 4 columns: every rank is <= 3
    ranks = target_rank(scores, torch.randint(0, 4, (5,)))
    metric.update(ranks)
    out = metric.compute()
    expected = loop_metrics(ranks.tolist(), (3, 50))
    assert float(out["test_hr@50"]) == 1.0
    for key, value in expected.items():
        assert float(out[f"test_{key}"]) == pytest.approx(value, abs=1e-6), key


def test_all_inf_except_target_and_single_row() -> None:
    scores = torch.full((1, 9), -INF)
    scores[0, 4] = 0.3
    ranks = target_rank(scores, torch.tensor([4]))
    assert ranks.tolist() == [0]
    metric = RankingMetrics(ks=(1,))
    metric.update(ranks)
    out = metric.compute()
    assert {k: float(v) for k, v in out.items()} == {"hr@1": 1.0, "ndcg@1": 1.0, "mrr": 1.0, "count": 1.0}


def test_empty_metric_is_nan_and_empty_update_is_a_no_op() -> None:
    metric = RankingMetrics()
    metric.update(torch.zeros(0, dtype=torch.long))
    with pytest.warns(UserWarning, match="before the ``update``"):
        out = RankingMetrics().compute()
    assert math.isnan(float(out["ndcg@10"])) and float(out["count"]) == 0.0
    assert float(metric.count) == 0.0


def test_count_can_be_left_out_of_compute() -> None:
    """The task logs the averages only: the count stays a state (summed over processes), not a metric."""
    metric = RankingMetrics(ks=(1, 10), report_count=False)
    metric.update(torch.tensor([0, 3, 20]))
    out = {k: round(float(v), 4) for k, v in metric.compute().items()}
    assert out == {"hr@1": 0.3333, "hr@10": 0.6667, "ndcg@1": 0.3333, "ndcg@10": 0.4769, "mrr": 0.4325}
    assert int(metric.count) == 3


def test_ddp_style_merge_equals_single_process() -> None:
    ks = (1, 10)
    ranks = target_rank(tied_scores(31, 40), torch.randint(0, 40, (31,)))
    single = RankingMetrics(ks)
    single.update(ranks)
    expected = single.compute()

    # 1) merge_state, as torchmetrics documents for combining processes' states.
    rank0, rank1 = RankingMetrics(ks), RankingMetrics(ks)
    rank0.update(ranks[:13])
    rank1.update(ranks[13:])
    rank0.merge_state(rank1)
    for key, value in rank0.compute().items():
        assert torch.allclose(value, expected[key]), key

    # 2) the real sync path of compute() with a fake all_gather over two "processes": every state is
    #    gathered and reduced with its dist_reduce_fx ("sum").
    def all_gather(tensor: torch.Tensor, group=None) -> list[torch.Tensor]:
        name = next(n for n in a._defaults if getattr(a, n) is tensor)
        return [tensor, getattr(b, name)]

    a = RankingMetrics(ks, dist_sync_fn=all_gather, distributed_available_fn=lambda: True)
    b = RankingMetrics(ks)
    a.update(ranks[:20])
    b.update(ranks[20:])
    synced = a.compute()
    for key, value in synced.items():
        assert torch.allclose(value, expected[key]), key
    assert float(synced["count"]) == 31.0
    assert int(a.count) == 20, "local state is restored after the synced compute"


def test_metric_collection_prefix_and_checkpoint_name_accept_at_sign() -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint
    from torchmetrics import MetricCollection

    collection = MetricCollection({"ranking": RankingMetrics((10,))}).clone(prefix="val_")
    collection.update(torch.tensor([0, 12]))
    out = collection.compute()
    assert set(out) == {"val_hr@10", "val_ndcg@10", "val_mrr", "val_count"}
    checkpoint = ModelCheckpoint(monitor="val_ndcg@10", filename="{epoch}-{val_ndcg@10:.4f}")
    name = checkpoint.format_checkpoint_name({"epoch": torch.tensor(3), **out})
    assert name.endswith("epoch=3-val_ndcg@10=0.5000.ckpt")


# ---------------------------------------------------------------------------------------------- top-k
def test_topk_items_ties_by_lower_id_and_k_clipped() -> None:
    scores = torch.tensor([[-INF, 2.0, 5.0, 2.0, 5.0], [-INF, 1.0, 1.0, 1.0, -INF]])
    values, items = topk_items(scores, 3)
    assert items.tolist() == [[2, 4, 1], [1, 2, 3]]
    assert values.tolist() == [[5.0, 5.0, 2.0], [1.0, 1.0, 1.0]]
    values, items = topk_items(scores, 99)
    assert items.shape == (2, 5)
    assert items[1].tolist() == [1, 2, 3, 0, 0]  # -inf entries are reported as padding, not items


# -------------------------------------------------------------------------------------------- errors
def test_invalid_inputs_raise_readable_errors() -> None:
    scores = torch.randn(2, 5)
    with pytest.raises(ValueError, match=r"seen holds ids in \[0, 7\]"):
        full_ranking_scores(scores, torch.tensor([[0, 7], [1, 2]]), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="target has batch size 3"):
        full_ranking_scores(scores, torch.tensor([[0, 1], [1, 2]]), torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="floating"):
        full_ranking_scores(torch.ones(2, 5, dtype=torch.long), None)
    with pytest.raises(ValueError, match=r"candidates holds ids in \[0, 3\].*\[1, 4\]"):
        sampled_ranking_scores(scores, torch.tensor([[1, 0], [2, 3]]))
    with pytest.raises(ValueError, match="target_index"):
        target_rank(scores, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="k must be >= 1"):
        topk_items(scores, 0)
    for ks in ((), (0,), (10, 10), (2.5,)):
        with pytest.raises(ValueError, match="ks"):
            RankingMetrics(ks)
    with pytest.raises(ValueError, match="non-negative"):
        RankingMetrics().update(torch.tensor([0, -1]))
    with pytest.raises(ValueError, match="1-D"):
        RankingMetrics().update(torch.zeros(2, 2))
