"""Pure tensor functions that turn catalogue scores into ranks for evaluation and top-K lists for predict.

Conventions (shared by the whole recsys domain): item ids are ``1 .. num_items``; id ``0`` is padding, so a
score matrix over the catalogue has ``num_items + 1`` columns and column 0 is never a real item.

Evaluation protocol:

* **Full ranking** (:func:`full_ranking_scores`): the target competes with every item of the catalogue.
  Padding is always masked to ``-inf``; with history masking every item the user already interacted with
  is masked too, **except the target itself**. Under leave-one-out the target may also occur earlier in the
  history (repeat consumption); masking it would make it unrankable and silently cap HR below 1. RecBole
  behaves the same way: it masks the history but the evaluated positive keeps its score.
* **Sampled ranking** (:func:`sampled_ranking_scores`): the target competes with ``C - 1`` sampled negatives
  only (``uni100`` / ``pop100``); column 0 of the result is the target.
* **Rank** (:func:`target_rank`): 0-based, *pessimistic* tie policy (see there), ``O(B·M)`` without sorting.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["full_ranking_scores", "sampled_ranking_scores", "target_rank", "topk_items"]


def _check_scores(scores: Tensor, name: str = "scores") -> None:
    if scores.ndim != 2:
        raise ValueError(f"{name} must be 2-D (batch, items), got shape {tuple(scores.shape)}")
    if not scores.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor (masking writes -inf), got {scores.dtype}")


def _check_ids(ids: Tensor, name: str, batch: int, low: int, high: int) -> None:
    """Raise a readable error instead of a device-side assert when ids fall outside ``[low, high]``."""
    if ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be an integer (int64) tensor of item ids, got {ids.dtype}")
    if ids.shape[0] != batch:
        raise ValueError(f"{name} has batch size {ids.shape[0]}, scores have {batch}")
    if ids.numel() == 0:
        return
    lo, hi = int(ids.min()), int(ids.max())
    if lo < low or hi > high:
        raise ValueError(f"{name} holds ids in [{lo}, {hi}], outside the valid range [{low}, {high}]")


def full_ranking_scores(scores: Tensor, seen: Tensor | None, target: Tensor | None = None) -> Tensor:
    """Mask the catalogue scores for full ranking.

    Column 0 (padding) is always set to ``-inf``. When ``seen`` is given, every seen item is set to ``-inf``
    as well, except the target of each row, which keeps its original score even if it occurs in the history
    (otherwise it could never be ranked; RecBole keeps the positive the same way). ``seen`` is 0-padded, and
    padding is masked anyway, so rows of different history length need no special care.

    Args:
        scores: Logits ``(B, I + 1)`` over the catalogue, column 0 = padding. Not modified.
        seen: ``(B, S)`` int64 ids of the items each user interacted with before the target (0 = padding),
            or ``None`` to disable history masking.
        target: ``(B,)`` int64 target ids whose score survives history masking; ``None`` (or 0, as in the
            predict batches) masks the whole history.

    Returns:
        A new tensor ``(B, I + 1)`` with the same dtype as ``scores`` and masked entries set to ``-inf``.

    Raises:
        ValueError: If shapes disagree or an id is outside ``[0, I]``.
        TypeError: If ``scores`` is not floating or the ids are not integers.
    """
    _check_scores(scores)
    batch, width = scores.shape
    out = scores.clone()
    out[:, 0] = float("-inf")
    if seen is None:
        return out
    if seen.ndim != 2:
        raise ValueError(f"seen must be 2-D (batch, history), got shape {tuple(seen.shape)}")
    _check_ids(seen, "seen", batch, 0, width - 1)
    if target is not None:
        if target.ndim != 1:
            raise ValueError(f"target must be 1-D (batch,), got shape {tuple(target.shape)}")
        _check_ids(target, "target", batch, 0, width - 1)
        kept = out.gather(1, target[:, None].long())
    out.scatter_(1, seen.long(), float("-inf"))
    if target is not None:
        out.scatter_(1, target[:, None].long(), kept)
        out[:, 0] = float("-inf")  # a 0 target (predict) must not restore the padding column
    return out


def sampled_ranking_scores(scores: Tensor, candidates: Tensor) -> Tensor:
    """Scores of each row's candidate items, ``[target, negatives...]``, for sampled ranking.

    Pass raw scores when the negatives were sampled among unseen items (the datamodule's protocol); pass
    the output of :func:`full_ranking_scores` instead if candidates may include seen items that should lose.

    Args:
        scores: Logits ``(B, I + 1)`` over the catalogue.
        candidates: ``(B, C)`` int64 item ids, the target at column 0, ids in ``[1, I]``.

    Returns:
        ``(B, C)`` scores; the target is at column 0, so rank it with ``target_rank(out, zeros)``.

    Raises:
        ValueError: If shapes disagree or a candidate id is outside ``[1, I]`` (padding is not an item).
    """
    _check_scores(scores)
    if candidates.ndim != 2 or candidates.shape[1] < 1:
        raise ValueError(f"candidates must be (batch, C >= 1), got shape {tuple(candidates.shape)}")
    _check_ids(candidates, "candidates", scores.shape[0], 1, scores.shape[1] - 1)
    return scores.gather(1, candidates.long())


def target_rank(scores: Tensor, target_index: Tensor) -> Tensor:
    """0-based rank of each row's target among the row's ``M`` columns, in ``O(B·M)`` without sorting.

    Tie policy: **pessimistic**. ``rank = #{j ≠ t : not (s_j < s_t)}``, i.e. every other item with a
    higher *or equal* score is ranked above the target. It is deterministic, integer-valued and never
    flatters a model: a constant scorer gets the worst rank instead of rank 0 (the evaluation bug Sun et al.,
    RecSys 2020, found in published code that placed the target first among ties). Trained float32 logits
    rarely tie, so the policy matters for degenerate models and low-precision (fp16/bf16) scores.

    Consequences: a ``-inf`` target (masked, padding) ties with every other ``-inf`` and ranks below every
    finite score, so it gets the worst rank ``M - 1``; a NaN target also gets ``M - 1`` and a NaN
    non-target always counts as above the target.

    Args:
        scores: ``(B, M)`` scores (full catalogue or sampled candidates).
        target_index: ``(B,)`` column of the target in each row (the item id for full ranking, 0 for
            sampled ranking).

    Returns:
        ``(B,)`` int64 ranks in ``[0, M - 1]``.

    Raises:
        ValueError: If shapes disagree or an index is outside ``[0, M - 1]``.
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (batch, items), got shape {tuple(scores.shape)}")
    if target_index.ndim != 1:
        raise ValueError(f"target_index must be 1-D (batch,), got shape {tuple(target_index.shape)}")
    _check_ids(target_index, "target_index", scores.shape[0], 0, scores.shape[1] - 1)
    target_score = scores.gather(1, target_index[:, None].long())
    # not (s_j < s_t) is True for s_j >= s_t and whenever either side is NaN; the target column always counts.
    return (~(scores < target_score)).sum(dim=1) - 1


def topk_items(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-``k`` items per row, best first, for predict.

    Ties are broken by the lower item id (a stable sort, so the output is deterministic). ``k`` larger than
    the number of columns returns every column. Entries whose score is ``-inf`` (padding, masked history)
    can appear when fewer than ``k`` items are rankable; their index is replaced by ``0`` (padding = "no
    item") so that they are never mistaken for a recommendation.

    Args:
        scores: ``(B, M)`` scores, typically the output of :func:`full_ranking_scores`.
        k: Number of items to return, ``>= 1``.

    Returns:
        ``(values, indices)``, both ``(B, min(k, M))``; indices are int64 column ids (= item ids for
        full-catalogue scores).

    Raises:
        ValueError: If ``k < 1`` or ``scores`` is not 2-D.
    """
    _check_scores(scores)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    values, indices = torch.sort(scores, dim=1, descending=True, stable=True)
    k = min(k, scores.shape[1])
    values, indices = values[:, :k], indices[:, :k]
    indices = indices.masked_fill(values == float("-inf"), 0)
    return values, indices
