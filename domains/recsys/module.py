"""The sequential-recommendation task: next-item training objectives and ranking evaluation.

One LightningModule serves every model of the domain (SASRec, BERT4Rec, IGR-SR, GRU4Rec, popularity).
The model's ``objective`` decides the training loss:

* ``causal`` (SASRec, GRU4Rec): every position predicts the next item. ``loss="ce"`` is cross-entropy
  over the whole catalogue; ``loss="bce"`` is SASRec's original binary cross-entropy with
  ``bce_negatives`` uniformly sampled negatives per position.
* ``cloze`` (BERT4Rec): a fraction ``mask_prob`` of the items is replaced by the mask token and
  predicted with cross-entropy over the catalogue.
* IGR-SR trains its reasoner on the last position with cross-entropy, plus its own intent-consistency
  loss (``model.extra_loss``).
* ``none`` (popularity): nothing to train; the counts come from the training split.

Evaluation ranks the held-out item against **all** items by default (``ranking="full"`` in the
datamodule): padding is never ranked and, with ``mask_history``, items the user already interacted with
are excluded (the target itself always stays rankable). With sampled ranking (``uni100``/``pop100``) the
target competes with the 100 negatives the datamodule drew once with a fixed seed. HR@K, NDCG@K and MRR
are sums synchronised across processes, so DDP gives the same numbers as one process.
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from core.attention import AttentionFactory
from core.training import BaseTask
from core.training.losses import linear_cross_entropy
from core.training.pretrained import read_state_dict
from domains.recsys.metrics import RankingMetrics
from domains.recsys.models import MODELS
from domains.recsys.ranking import full_ranking_scores, sampled_ranking_scores, target_rank, topk_items

__all__ = ["SequentialRecommendation"]

ModelName = Literal["sasrec", "bert4rec", "igrsr", "gru4rec", "pop"]


class SequentialRecommendation(BaseTask):
    """Next-item recommendation from a user's interaction sequence.

    ``num_items`` and ``max_len`` come from the datamodule through the CLI. The metric names are
    ``{stage}_hr@K``, ``{stage}_ndcg@K`` and ``{stage}_mrr``; checkpoints follow ``val_ndcg@10``.

    Args:
        model: ``sasrec`` (Kang & McAuley 2018), ``bert4rec`` (Sun et al. 2019), ``igrsr`` (Shao & Zhou
            2025, intent-guided reasoning), ``gru4rec`` (Hidasi et al. 2016, a non-attention baseline) or
            ``pop`` (most popular items first).
        attention: Attention factory for the transformer models' self-attention (any registered
            mechanism, e.g. ``--model.attention=NeighborhoodAttention``). Default (None): the model's own
            default, :class:`~core.attention.MultiHeadAttention` with ``num_heads`` heads.
        hidden_dim: Width of the item embeddings and hidden states.
        num_layers: Transformer blocks (GRU layers for gru4rec).
        num_heads: Heads of the default attention.
        dropout: Dropout of embeddings, attention outputs and feed-forward layers.
        loss: ``ce`` (full-catalogue cross-entropy) or ``bce`` (one positive against ``bce_negatives``
            sampled negatives per position, SASRec's original loss). Causal models only.
        bce_negatives: Negatives per position for ``loss=bce``.
        mask_prob: BERT4Rec's cloze masking probability.
        num_intents: IGR-SR's number of intent tokens K.
        num_prefix: IGR-SR's number of learnable prefix tokens.
        icr_weight: IGR-SR's weight λ of the intent-consistency (InfoNCE) loss.
        icr_temperature: IGR-SR's InfoNCE temperature τ.
        icr_mask_ratio: Fraction of items masked in each of IGR-SR's two augmented views.
        freeze_encoder: IGR-SR: keep the SASRec intent distiller frozen (the paper). Without an
            ``encoder_checkpoint`` a frozen encoder is random: set it to false then.
        reasoner_layers: IGR-SR: cross-attention layers of the deliberative reasoner.
        output_table: IGR-SR: score with the frozen encoder's item table (``shared``) or a trainable copy
            of it (``finetune``).
        residual: IGR-SR: the user vector is SASRec's last state plus the gated reasoner output (True, starts
            exactly at the pre-trained SASRec) or the reasoner output alone (False, the paper's literal form).
        encoder_checkpoint: IGR-SR: a SASRec checkpoint (``.ckpt`` of this task with ``model=sasrec``), or
            the ``default_root_dir`` of such a run (its best checkpoint is used), whose weights become the
            frozen intent-distiller encoder.
        ks: Cut-offs K of HR@K and NDCG@K; the first value of 10, if present, is the one monitored.
        top_k: Items per user written by ``predict``.
        num_items: Catalogue size (linked from the data).
        max_len: Length of the input sequences (linked).
        mask_history: Exclude already-seen items from full ranking (linked from the datamodule).
        pretrained: Checkpoint to initialise the weights from (fine-tuning).
    """

    monitor = "val_ndcg@10"
    mode = "max"

    def __init__(
        self,
        model: ModelName = "sasrec",
        attention: AttentionFactory | None = None,
        hidden_dim: int = 64,
        num_layers: int = 2,
        num_heads: int = 1,
        dropout: float = 0.2,
        loss: Literal["ce", "bce"] = "ce",
        bce_negatives: int = 1,
        mask_prob: float = 0.2,
        num_intents: int = 4,
        num_prefix: int = 2,
        icr_weight: float = 0.1,
        icr_temperature: float = 0.2,
        icr_mask_ratio: float = 0.2,
        freeze_encoder: bool = True,
        reasoner_layers: int = 2,
        output_table: Literal["shared", "finetune"] = "shared",
        residual: bool = True,
        encoder_checkpoint: str | None = None,
        ks: list[int] | None = None,
        top_k: int = 20,
        num_items: int | None = None,
        max_len: int | None = None,
        mask_history: bool = True,
        pretrained: str | None = None,
    ) -> None:
        self.attention = attention
        super().__init__(pretrained=pretrained)

    def configure_models(self) -> None:
        """Build the chosen recommender from the (linked) catalogue size and sequence length."""
        hp = self.hparams
        for name in ("num_items", "max_len"):
            if hp[name] is None:
                raise ValueError(
                    f"SequentialRecommendation: {name} is unknown. It is linked from the datamodule by "
                    f"`attnlab`; when building the task by hand pass {name}=..."
                )
        if hp.model not in MODELS:
            raise ValueError(
                f"SequentialRecommendation: unknown model {hp.model!r}; expected {sorted(MODELS)}"
            )
        if self.attention is not None and hp.model in ("gru4rec", "pop"):
            raise ValueError(f"SequentialRecommendation: model={hp.model!r} has no attention to replace")
        self.network: nn.Module = MODELS[hp.model](**self._model_kwargs())
        if self.network.objective == "none" and not any(True for _ in self.parameters()):
            # Popularity has nothing to train. One frozen scalar lets the configured optimizer be built, so
            # `attnlab fit` still validates and checkpoints it like every other model.
            self.no_op = nn.Parameter(torch.zeros(1), requires_grad=False)
        if hp.model == "igrsr" and hp.encoder_checkpoint:
            self.network.load_encoder_state(read_state_dict(_resolve_checkpoint(hp.encoder_checkpoint)))

    def _model_kwargs(self) -> dict[str, Any]:
        hp = self.hparams
        kwargs: dict[str, Any] = {"num_items": hp.num_items, "max_len": hp.max_len}
        if hp.model == "pop":
            return kwargs
        kwargs |= {"hidden_dim": hp.hidden_dim, "num_layers": hp.num_layers, "dropout": hp.dropout}
        if hp.model in ("sasrec", "bert4rec", "igrsr"):
            kwargs |= {"num_heads": hp.num_heads, "attention": self.attention}
        if hp.model == "bert4rec":
            kwargs["mask_prob"] = hp.mask_prob
        if hp.model == "igrsr":
            kwargs |= {
                "num_intents": hp.num_intents,
                "num_prefix": hp.num_prefix,
                "icr_weight": hp.icr_weight,
                "icr_temperature": hp.icr_temperature,
                "icr_mask_ratio": hp.icr_mask_ratio,
                "freeze_encoder": hp.freeze_encoder,
                "reasoner_layers": hp.reasoner_layers,
                "output_table": hp.output_table,
                "residual": hp.residual,
            }
        return kwargs

    def configure_losses(self) -> None:
        """Validate the loss choice against the model's objective."""
        hp = self.hparams
        objective = self.network.objective
        if hp.loss == "bce" and objective != "causal":
            raise ValueError(f"SequentialRecommendation: loss='bce' needs a causal model, got {hp.model!r}")
        if hp.bce_negatives < 1:
            raise ValueError(f"SequentialRecommendation: bce_negatives must be >= 1, got {hp.bce_negatives}")

    def configure_metrics(self) -> None:
        """HR@K, NDCG@K and MRR for validation and test."""
        ks = list(self.hparams.ks or [10, 20])
        if not ks or min(ks) < 1:
            raise ValueError(f"SequentialRecommendation: ks must be positive cut-offs, got {ks}")
        self.ks = ks
        self.val_metrics = RankingMetrics(ks)
        self.test_metrics = RankingMetrics(ks)

    def forward(self, items: Tensor) -> Tensor:
        """Scores ``(B, num_items + 1)`` of every item as the next one after ``items`` ``(B, L)``."""
        return self.network.scores(self.network.user_vector(items))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        """One step of the model's objective on ``batch["items"]`` ``(B, L + 1)``."""
        items = batch["items"]
        objective = self.network.objective
        if objective == "none":
            return None
        if objective == "cloze":
            loss = self._cloze_loss(items[:, 1:])
        elif hasattr(self.network, "extra_loss"):
            inputs, targets = items[:, :-1], items[:, -1]
            hidden = self.network.user_vector(inputs)
            loss = self._catalogue_ce(hidden, targets) + self.network.extra_loss(inputs)
        else:
            loss = self._causal_loss(items[:, :-1], items[:, 1:])
        aux = self.aux_loss()
        if aux is not None:
            loss = loss + aux
        self.log("train_loss", loss, on_step=True, on_epoch=True, batch_size=len(items))
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Rank each user's validation item."""
        self._rank_step(batch, self.val_metrics)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Rank each user's test item."""
        self._rank_step(batch, self.test_metrics)

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

    def on_validation_epoch_end(self) -> None:
        """Log validation HR@K, NDCG@K and MRR."""
        self._log_metrics("val", self.val_metrics)

    def on_test_epoch_end(self) -> None:
        """Log test HR@K, NDCG@K and MRR."""
        self._log_metrics("test", self.test_metrics)

    def write_predictions(
        self, predictions: Sequence[dict[str, Tensor]], output_dir: Path, rank: int, world: int
    ) -> Path:
        """Write the top-k items per user as JSON lines: raw user id, raw item ids and scores.

        Args:
            predictions: What :meth:`predict_step` returned for each batch of this rank.
            output_dir: Destination folder (checked by :class:`~core.training.PredictionWriter`).
            rank: Global rank of this process.
            world: Number of processes; with several, each writes ``recommendations-rank<r>.jsonl``.

        Returns:
            The path written.
        """
        datamodule = self.trainer.datamodule
        user_ids = getattr(datamodule, "predict_user_ids", None) or getattr(datamodule, "user_ids", None)
        item_ids = getattr(datamodule, "item_ids", None)
        name = "recommendations.jsonl" if world == 1 else f"recommendations-rank{rank}.jsonl"
        path = output_dir / name
        with path.open("w") as handle:
            for batch in predictions:
                for u, items, scores in zip(batch["user"], batch["items"], batch["scores"], strict=True):
                    user = user_ids[int(u)] if user_ids is not None else int(u)
                    ids = [item_ids[int(i)] if item_ids is not None else int(i) for i in items]
                    record = {"user": user, "items": ids, "scores": [round(float(s), 6) for s in scores]}
                    handle.write(json.dumps(record) + "\n")
        return path

    def _fit_popularity(self, required: bool) -> None:
        """Give the popularity model the training-split counts (when it has none yet, unless ``required``)."""
        if self.network.objective != "none" or (not required and bool(self.network.counts.any())):
            return
        counts = getattr(self.trainer.datamodule, "item_counts", None)
        if counts is None:
            if required:
                raise RuntimeError("the popularity model needs a datamodule with item_counts")
            return
        self.network.fit(counts.to(self.device))

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

        Every trainable model of the domain exposes ``output_layer()``; the chunked
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
        inputs = torch.where(masked, torch.full_like(items, self.hparams.num_items + 1), items)
        hidden = self.network.encode(inputs)
        return self._catalogue_ce(hidden[masked], items[masked])

    def _rank_step(self, batch: dict[str, Tensor], metrics: RankingMetrics) -> None:
        scores = self(batch["items"]).float()
        target = batch["target"]
        if "candidates" in batch:
            candidate_scores = sampled_ranking_scores(scores, batch["candidates"])
            ranks = target_rank(candidate_scores, torch.zeros_like(target))
        else:
            seen = batch.get("seen") if self.hparams.mask_history else None
            ranks = target_rank(full_ranking_scores(scores, seen, target), target)
        metrics.update(ranks)

    def _log_metrics(self, stage: str, metrics: RankingMetrics) -> None:
        values = {f"{stage}_{k}": v for k, v in metrics.compute().items() if k != "count"}
        metrics.reset()
        self.log_dict(values, sync_dist=False)

    def _log_protocol(self, stage: str) -> None:
        protocol = getattr(self.trainer.datamodule, "protocol", None)
        text = f"[{stage}] model={self.hparams.model}, ks={self.ks}, mask_history={self.hparams.mask_history}"
        if protocol:
            text += f", {protocol}"
        rank_zero_info(f"recsys protocol: {text}")
        if self.trainer.is_global_zero and self.logger is not None:
            experiment = getattr(self.logger, "experiment", None)
            if hasattr(experiment, "add_text"):
                experiment.add_text("protocol", text, global_step=self.global_step)


def _resolve_checkpoint(path: str) -> Path:
    """A checkpoint file as given, or the best checkpoint of a run directory."""
    from core.cli import best_checkpoint  # the CLI module imports the domains, not the other way round

    p = Path(path)
    if p.is_dir():
        return best_checkpoint(p / "checkpoints" if (p / "checkpoints").is_dir() else p)
    if not p.is_file():
        raise FileNotFoundError(
            f"encoder_checkpoint {path!r} is neither a checkpoint file nor a run directory"
        )
    return p
