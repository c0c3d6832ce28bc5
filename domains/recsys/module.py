"""The sequential-recommendation task: next-item training objectives and ranking evaluation.

One LightningModule serves every network of the domain (SASRec, BERT4Rec, IGR-SR, GRU4Rec, popularity),
injected as a factory (``--model.network=BERT4Rec``). The network's ``objective`` decides the training loss:

* ``causal`` (SASRec, GRU4Rec): every position predicts the next item. ``loss="ce"`` is cross-entropy
  over the whole catalogue; ``loss="bce"`` is SASRec's original binary cross-entropy with
  ``bce_negatives`` uniformly sampled negatives per position.
* ``cloze`` (BERT4Rec): a share ``mask_prob`` (the network's) of the items is replaced by the mask token
  and predicted with cross-entropy over the catalogue.
* ``last`` (IGR-SR): the last position predicts the next item with cross-entropy, plus the network's own
  ``extra_loss`` (IGR-SR's intent consistency).
* ``none`` (popularity): nothing to train; the counts come from the training split.

Evaluation ranks the held-out item against **all** items by default (``ranking="full"`` in the
datamodule): padding is never ranked and, with ``mask_history``, items the user already interacted with
are excluded (the target itself always stays rankable). With sampled ranking (``uni100``/``pop100``) the
target competes with the negatives the datamodule drew once with a fixed seed. HR@K, NDCG@K and MRR are
sums synchronised across processes, so DDP gives the same numbers as one process.
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from core.attention import AttentionFactory
from core.training import BaseTask
from core.training.losses import linear_cross_entropy
from domains.recsys.metrics import RankingMetrics
from domains.recsys.models import SASRec, SeqRecNetwork, SeqRecNetworkFactory
from domains.recsys.ranking import full_ranking_scores, sampled_ranking_scores, target_rank, topk_items

__all__ = ["SequentialRecommendation"]


class SequentialRecommendation(BaseTask):
    """Next-item recommendation from a user's interaction sequence.

    ``num_items``, ``max_len`` and ``mask_history`` come from the datamodule through the CLI. The metric
    names are ``{stage}_hr@K``, ``{stage}_ndcg@K`` and ``{stage}_mrr`` (validation and test);
    checkpoints follow ``val_ndcg@10``.

    Args:
        network: The recommender: a :class:`~domains.recsys.models.SeqRecNetwork` class or a factory of one
            (``--model.network=SASRec --model.network.hidden_dim=64``): :class:`~domains.recsys.models.SASRec`
            (Kang & McAuley 2018, the default), :class:`~domains.recsys.models.BERT4Rec` (Sun et al. 2019),
            :class:`~domains.recsys.models.IGRSR` (Shao & Zhou 2025, intent-guided reasoning),
            :class:`~domains.recsys.models.GRU4Rec` (Hidasi et al. 2016, a non-attention baseline) or
            :class:`~domains.recsys.models.PopularityRecommender` (most popular items first). Its own
            options are documented by ``--model.network.help <Class>``.
        attention: Attention factory for the transformer networks' self-attention (any registered
            mechanism, e.g. ``--model.attention=NeighborhoodAttention``). Default (None): the network's own
            default, :class:`~core.attention.MultiHeadAttention` with its ``num_heads`` heads. A network
            without attention (GRU4Rec, popularity) refuses it.
        loss: ``ce`` (full-catalogue cross-entropy) or ``bce`` (one positive against ``bce_negatives``
            sampled negatives per position, SASRec's original loss). Causal networks only.
        bce_negatives: Negatives per position for ``loss=bce``.
        ks: Cut-offs K of HR@K and NDCG@K (default ``[10, 20]``); checkpoints monitor ``val_ndcg@10``, so
            keep 10 among them.
        top_k: Items per user written by ``predict``.
        num_items: Catalogue size (linked from the data).
        max_len: Length of the input sequences (linked).
        mask_history: Exclude already-seen items from full ranking (linked from the datamodule).
        pretrained: Checkpoint to initialise the weights from (fine-tuning).
    """

    monitor = "val_ndcg@10"
    mode = "max"
    metric_stages = ("val", "test")

    def __init__(
        self,
        network: SeqRecNetworkFactory | None = None,
        attention: AttentionFactory | None = None,
        loss: Literal["ce", "bce"] = "ce",
        bce_negatives: int = 1,
        ks: list[int] | None = None,
        top_k: int = 20,
        num_items: int | None = None,
        max_len: int | None = None,
        mask_history: bool = True,
        pretrained: str | None = None,
    ) -> None:
        self.network_factory = network or SASRec
        self.attention = attention
        super().__init__(pretrained=pretrained)

    def configure_models(self) -> None:
        """Build the network from the (linked) catalogue size and sequence length."""
        self.require_linked("num_items", "max_len")
        network = self.build_network(
            self.network_factory, num_items=self.hparams.num_items, max_len=self.hparams.max_len
        )
        if not isinstance(network, SeqRecNetwork):
            raise TypeError(
                f"SequentialRecommendation: network built {type(network).__name__}, which is not a "
                "SeqRecNetwork (domains.recsys.models)"
            )
        self.network = network
        if network.objective == "none" and not any(True for _ in self.parameters()):
            # Popularity has nothing to train. One frozen scalar lets the configured optimizer be built, so
            # `attnlab fit` still validates and checkpoints it like every other network.
            self.no_op = nn.Parameter(torch.zeros(1), requires_grad=False)

    def configure_losses(self) -> None:
        """Validate the loss choice against the network's objective."""
        hp = self.hparams
        if hp.loss == "bce" and self.network.objective != "causal":
            raise ValueError(
                f"SequentialRecommendation: loss='bce' needs a causal network (SASRec, GRU4Rec), got "
                f"{type(self.network).__name__} (objective {self.network.objective!r})"
            )
        if hp.bce_negatives < 1:
            raise ValueError(f"SequentialRecommendation: bce_negatives must be >= 1, got {hp.bce_negatives}")

    def configure_metrics(self) -> RankingMetrics:
        """HR@K, NDCG@K and MRR (the number of users is not logged)."""
        ks = list(self.hparams.ks or [10, 20])
        if not ks or min(ks) < 1:
            raise ValueError(f"SequentialRecommendation: ks must be positive cut-offs, got {ks}")
        self.ks = ks
        return RankingMetrics(ks, report_count=False)

    def forward(self, items: Tensor) -> Tensor:
        """Scores ``(B, num_items + 1)`` of every item as the next one after ``items`` ``(B, L)``."""
        return self.network.scores(self.network.user_vector(items))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        """One step of the network's objective on ``batch["items"]`` ``(B, L + 1)``."""
        items = batch["items"]
        objective = self.network.objective
        if objective == "none":
            return None
        if objective == "cloze":
            inputs = items[:, 1:]
            loss = self._cloze_loss(inputs)
        elif objective == "last":
            inputs = items[:, :-1]
            loss = self._catalogue_ce(self.network.user_vector(inputs), items[:, -1])
        else:
            inputs = items[:, :-1]
            loss = self._causal_loss(inputs, items[:, 1:])
        extra = self.network.extra_loss(inputs)
        if extra is not None:
            loss = loss + extra
        return self.log_loss("train", loss, len(items))

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Rank each user's validation item."""
        self.update_metrics("val", self._ranks(batch))

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Rank each user's test item."""
        self.update_metrics("test", self._ranks(batch))

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """The ``top_k`` next items for each user, unseen ones only when history masking is on."""
        scores = self(batch["items"]).float()
        seen = batch.get("seen") if self.hparams.mask_history else None
        target = torch.zeros(len(scores), dtype=torch.long, device=scores.device)
        scores = full_ranking_scores(scores, seen, target)
        values, indices = topk_items(scores, min(self.hparams.top_k, self.hparams.num_items))
        return {"user": batch["user"].cpu(), "items": indices.cpu(), "scores": values.cpu()}

    def on_fit_start(self) -> None:
        """Fit the popularity counts, and log the evaluation protocol."""
        self._fit_popularity(required=True)
        self._log_protocol("fit")

    def on_test_start(self) -> None:
        """Fit the popularity counts if a checkpoint did not bring them, and log the evaluation protocol."""
        self._fit_popularity(required=False)
        self._log_protocol("test")

    def write_predictions(self, predictions: Sequence[dict[str, Tensor]], output_dir: Path) -> Path:
        """Write the top-k items per user as JSON lines: raw user id, raw item ids and scores.

        Args:
            predictions: What :meth:`predict_step` returned for each batch of this rank.
            output_dir: Destination folder (checked by :class:`~core.training.PredictionWriter`).

        Returns:
            The path written.
        """
        datamodule = self.trainer.datamodule
        user_ids = getattr(datamodule, "predict_user_ids", None) or getattr(datamodule, "user_ids", None)
        item_ids = getattr(datamodule, "item_ids", None)
        path = self.prediction_path(output_dir, "recommendations", ".jsonl")
        with path.open("w") as handle:
            for batch in predictions:
                for u, items, scores in zip(batch["user"], batch["items"], batch["scores"], strict=True):
                    user = user_ids[int(u)] if user_ids is not None else int(u)
                    ids = [item_ids[int(i)] if item_ids is not None else int(i) for i in items]
                    record = {"user": user, "items": ids, "scores": [round(float(s), 6) for s in scores]}
                    handle.write(json.dumps(record) + "\n")
        return path

    def _fit_popularity(self, required: bool) -> None:
        """Give a popularity network the training-split counts (when it has none yet, unless ``required``)."""
        network = self.network
        if network.objective != "none" or (not required and bool(network.counts.any())):
            return
        counts = getattr(self.trainer.datamodule, "item_counts", None)
        if counts is None:
            if required:
                raise RuntimeError(f"{type(network).__name__} needs a datamodule with item_counts")
            return
        network.fit(counts.to(self.device))

    def _causal_loss(self, inputs: Tensor, targets: Tensor) -> Tensor:
        hidden = self.network.encode(inputs)
        valid = (targets > 0) & (inputs > 0)  # a padding position's state is empty: nothing to predict
        if not bool(valid.any()):
            raise ValueError("a training batch has no target item (every sequence is padding)")
        h, y = hidden[valid], targets[valid]
        if self.hparams.loss == "ce":
            return self._catalogue_ce(h, y)
        table = self.network.output_layer()[0]  # a sampled loss on dot products: no bias
        negatives = torch.randint(
            1, self.hparams.num_items + 1, (len(y), self.hparams.bce_negatives), device=y.device
        )
        pos = (h * table[y]).sum(-1)
        neg = torch.einsum("pd,pkd->pk", h, table[negatives])
        return F.binary_cross_entropy_with_logits(
            torch.cat([pos[:, None], neg], dim=1),
            torch.cat([torch.ones_like(pos[:, None]), torch.zeros_like(neg)], dim=1),
            reduction="sum",
        ) / len(y)

    def _catalogue_ce(self, hidden: Tensor, targets: Tensor) -> Tensor:
        """Cross-entropy of ``hidden (P, D)`` over the whole catalogue (padding never predicted).

        Every trainable network of the domain exposes ``output_layer()``; the chunked
        :func:`~core.training.losses.linear_cross_entropy` gives the same values and gradients as
        ``F.cross_entropy`` on ``scores(hidden)`` without the ``(P, num_items + 1)`` logits in memory.
        """
        weight, bias = self.network.output_layer()
        return linear_cross_entropy(hidden, weight, targets, bias, excluded_class=0)

    def _cloze_loss(self, items: Tensor) -> Tensor:
        real = items > 0
        masked = real & (torch.rand(items.shape, device=items.device) < self.network.mask_prob)
        # Every sequence predicts at least its last item, as BERT4Rec's evaluation asks it to.
        last = torch.zeros_like(masked)
        last[:, -1] = real[:, -1]
        masked = masked | (last & ~masked.any(dim=1, keepdim=True))
        inputs = torch.where(masked, torch.full_like(items, self.network.mask_token), items)
        hidden = self.network.encode(inputs)
        return self._catalogue_ce(hidden[masked], items[masked])

    def _ranks(self, batch: dict[str, Tensor]) -> Tensor:
        """0-based rank of each batch row's target: among the candidates, or the (masked) catalogue."""
        scores = self(batch["items"]).float()
        target = batch["target"]
        if "candidates" in batch:
            candidate_scores = sampled_ranking_scores(scores, batch["candidates"])
            return target_rank(candidate_scores, torch.zeros_like(target))
        seen = batch.get("seen") if self.hparams.mask_history else None
        return target_rank(full_ranking_scores(scores, seen, target), target)

    def _log_protocol(self, stage: str) -> None:
        protocol = getattr(self.trainer.datamodule, "protocol", None)
        network = type(self.network).__name__
        text = f"[{stage}] network={network}, ks={self.ks}, mask_history={self.hparams.mask_history}"
        if protocol:
            text += f", {protocol}"
        rank_zero_info(f"recsys protocol: {text}")
        if self.trainer.is_global_zero and self.logger is not None:
            experiment = getattr(self.logger, "experiment", None)
            if hasattr(experiment, "add_text"):
                experiment.add_text("protocol", text, global_step=self.global_step)
