"""Ranking metrics for sequential recommendation with one held-out target per user (leave-one-out).

:class:`RankingMetrics` consumes the 0-based rank of each target (from
:func:`domains.recsys.ranking.target_rank`) and reports, averaged over users:

* ``hr@K``: hit ratio, ``1[rank < K]`` (equal to recall@K with a single relevant item);
* ``ndcg@K``: binary-relevance NDCG, ``1 / log2(rank + 2)`` if ``rank < K`` else 0 (the ideal DCG is 1);
* ``mrr``: mean reciprocal rank ``1 / (rank + 1)`` over the whole list (no cut-off);
* ``count``: number of users evaluated (summed over processes), unless ``report_count=False`` (the task
  logs the averages only).

Keys contain ``@`` (``hr@10``), as in RecBole and the papers; Lightning's ``self.log``, ModelCheckpoint
``monitor``/``filename`` templates, TensorBoard and CSV loggers accept it. Only MLFlowLogger rewrites it (it
strips characters outside ``[a-zA-Z0-9_/. -]``, so ``val_hr@10`` becomes ``val_hr10``, with a warning).

States are sums with ``dist_reduce_fx="sum"``, so under DDP ``compute()`` gives the exact global average over
every user of every process (and merging two metric objects equals one object fed all the data).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["RankingMetrics"]


class RankingMetrics(Metric):
    """HR@K, NDCG@K and MRR from target ranks, with sum states for exact DDP averages.

    Example:
        >>> metric = RankingMetrics(ks=(1, 10), prefix="val_")
        >>> metric.update(torch.tensor([0, 3, 20]))
        >>> for key, value in metric.compute().items():
        ...     print(key, round(float(value), 4))
        val_hr@1 0.3333
        val_hr@10 0.6667
        val_ndcg@1 0.3333
        val_ndcg@10 0.4769
        val_mrr 0.4325
        val_count 3.0

    Args:
        ks: Cut-offs K for ``hr@K`` and ``ndcg@K``; positive, distinct integers (reported in ascending
            order). A K larger than the catalogue is allowed (every rank is then a hit).
        prefix: String prepended to every key, e.g. ``"val_"``. Leave empty when the metric sits in a
            :class:`~torchmetrics.MetricCollection` that adds its own prefix.
        report_count: Include ``count`` in :meth:`compute` (the number of ranks seen).
        **kwargs: Passed to :class:`torchmetrics.Metric` (``dist_sync_on_step``, ``process_group``, ...).

    Sums of NDCG and reciprocal ranks are kept in float64 (exact enough for millions of users); hits and
    the count are int64. ``compute()`` returns float32 scalars (``count`` included, so that ``self.log``
    need not convert it); before any update every value is NaN and ``count`` is 0.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    hits: Tensor
    ndcg_sum: Tensor
    rr_sum: Tensor
    count: Tensor

    def __init__(
        self, ks: Sequence[int] = (10, 20), prefix: str = "", report_count: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        ks = list(ks)
        if not ks:
            raise ValueError("ks must contain at least one cut-off")
        for k in ks:
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise ValueError(f"every cut-off in ks must be a positive int, got {k!r} in {ks}")
        if len(set(ks)) != len(ks):
            raise ValueError(f"ks has duplicate cut-offs: {ks}")
        self.ks: tuple[int, ...] = tuple(sorted(ks))
        # Not called ``prefix``: MetricCollection reads a child's ``prefix`` attribute when it renames keys.
        self.key_prefix = prefix
        self.report_count = report_count
        self.add_state("hits", torch.zeros(len(self.ks), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("ndcg_sum", torch.zeros(len(self.ks), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("rr_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, ranks: Tensor) -> None:
        """Add a batch of 0-based target ranks.

        Args:
            ranks: ``(B,)`` non-negative ranks (int, or float for callers using fractional tie policies).

        Raises:
            ValueError: If ``ranks`` is not 1-D or holds a negative or NaN value.
        """
        if ranks.ndim != 1:
            raise ValueError(f"ranks must be 1-D (batch,), got shape {tuple(ranks.shape)}")
        if ranks.numel() == 0:
            return
        r = ranks.detach().to(device=self.count.device, dtype=torch.float64)
        if bool(torch.isnan(r).any()) or bool((r < 0).any()):
            raise ValueError(f"ranks must be non-negative numbers, got min {float(r.min())} (or NaN)")
        ks = torch.tensor(self.ks, dtype=torch.float64, device=r.device)
        inside = r[None, :] < ks[:, None]  # (K, B)
        gain = 1.0 / torch.log2(r + 2.0)  # (B,)
        self.hits += inside.sum(dim=1)
        self.ndcg_sum += (inside * gain[None, :]).sum(dim=1)
        self.rr_sum += (1.0 / (r + 1.0)).sum()
        self.count += r.numel()

    def compute(self) -> dict[str, Tensor]:
        """Averages over every rank seen (on every process once synced).

        Returns:
            ``{prefix + "hr@K", prefix + "ndcg@K" for each K, prefix + "mrr", prefix + "count"}``, float32
            scalars, HR keys first, then NDCG, MRR and the count (left out with ``report_count=False``).
        """
        n = self.count.to(torch.float64)  # 0 / 0 = NaN before any update, without a host sync
        hr, ndcg, mrr = self.hits.to(torch.float64) / n, self.ndcg_sum / n, self.rr_sum / n
        p = self.key_prefix
        out: dict[str, Tensor] = {f"{p}hr@{k}": hr[i].float() for i, k in enumerate(self.ks)}
        out.update({f"{p}ndcg@{k}": ndcg[i].float() for i, k in enumerate(self.ks)})
        out[f"{p}mrr"] = mrr.float()
        if self.report_count:
            out[f"{p}count"] = n.float()
        return out
