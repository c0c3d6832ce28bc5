"""IGR-SR: intent-guided reasoning for sequential recommendation, built on a frozen SASRec.

Paper: Shao & Zhou, "Intent-Guided Reasoning for Sequential Recommendation", arXiv 2512.14034 (2025).
There is no official code; this follows the paper's description (§3) and fills the gaps with the
choices documented on :class:`IGRSR` and in ``docs``. Three parts:

* **LID (Latent Intent Distiller).** ``P`` learnable prefix tokens, the user's items and ``K`` learnable
  ``<intent>`` tokens, ``S_aug = [P; S_u; I]``, go through a **frozen** pre-trained SASRec; the outputs at
  the intent tokens, after a two-layer MLP projection, are the intents ``I_u ∈ R^{K×d}``. With a causal
  encoder the intent tokens must come *after* the items to see all of them, as in the paper.
* **IDR (Intent-aware Deliberative Reasoner).** ``R`` learned reasoning tokens; each of ``reasoner_layers``
  layers first attends to the intents (*intent deliberation*: cross-attention + FFN), then to the
  item-sequence states (*decision making*: cross-attention + FFN, padding masked). The (mean) reasoning
  token is the user vector; scores are dot products with the item embeddings.
* **ICR (Intent Consistency Regularisation).** Two randomly masked views of the sequence give two intent
  sets; an InfoNCE loss (temperature ``τ``, weight ``λ``) pulls each user's intent ``k`` of one view to
  intent ``k`` of the other view and away from the other users' intent ``k``.

Training contract (what :class:`~domains.recsys.module.SequentialRecommendation` does for a network with
``objective = "last"``): ``loss = CE(scores(user_vector(items[:, :-1])), items[:, -1]) +
extra_loss(items[:, :-1])``, i.e. next-item cross-entropy on the **last position only** plus
``λ · InfoNCE``. :meth:`IGRSR.training_loss` computes the same sum for use outside the task.
"""

import warnings
from collections.abc import Callable, Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from core.attention import AttentionFactory, CrossAttention, TokenMixer
from core.attention.mha import default_heads_factory
from core.layers import Mlp
from core.training.checkpoint import run_checkpoint
from core.training.pretrained import LoadReport, read_state_dict
from domains.recsys.models.base import SeqRecNetwork
from domains.recsys.models.sasrec import SASRec

__all__ = ["IGRSR", "IntentReasonerLayer", "intent_info_nce", "mask_views"]

CrossAttentionFactory = Callable[[int], TokenMixer]
"""``cross_attention(dim, layer_idx=i, num_layers=L)``: a mixer that takes ``context=`` (and ``mask=``)."""

_CHECKPOINT_PREFIXES = ("network.", "model.", "module.", "encoder.", "_orig_mod.")


def mask_views(
    items: Tensor, mask_ratio: float, num_views: int = 2, *, generator: torch.Generator | None = None
) -> list[Tensor]:
    """Randomly masked views of a batch of sequences for the intent-consistency loss.

    Each real item of each view is dropped (set to padding ``0``) with probability ``mask_ratio``,
    independently per view; its position stays where it was (no re-packing), so the encoder sees the
    remaining items at their original positions and the key-padding mask hides the holes. A view that
    would lose every real item keeps its most recent one. Padding stays padding.

    Args:
        items: ``(B, L)`` item ids, ``0`` = padding.
        mask_ratio: Probability of dropping each real item, in ``[0, 1)``.
        num_views: Number of views.
        generator: Random generator, for reproducible views; the draws are made on the CPU so a seeded
            CPU generator gives the same views on every device.

    Returns:
        ``num_views`` tensors shaped like ``items``.
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_views: mask_ratio must be in [0, 1), got {mask_ratio}")
    real = items > 0
    positions = torch.arange(items.shape[1], device=items.device)
    last_real = torch.where(real, positions, -1).argmax(dim=1)  # index of each row's most recent item
    views = []
    for _ in range(num_views):
        draw = torch.rand(items.shape, generator=generator).to(items.device)
        drop = real & (draw < mask_ratio)
        emptied = (real & ~drop).sum(dim=1) == 0
        rows = emptied.nonzero(as_tuple=True)[0]
        drop[rows, last_real[rows]] = False
        views.append(items.masked_fill(drop, 0))
    return views


def intent_info_nce(first: Tensor, second: Tensor, temperature: float) -> Tensor:
    """Symmetric per-intent InfoNCE between two views' intents.

    For every intent index ``k`` the cosine similarities ``s_k[b, c] = cos(z1[b, k], z2[c, k]) / τ`` form a
    ``(B, B)`` matrix whose diagonal holds the positives (same user, same intent) and whose off-diagonal
    entries are the negatives (other users, same intent). The loss is the mean over ``k``, users and both
    directions of ``-log softmax`` of the positive: ``½ [CE(s_k, diag) + CE(s_kᵀ, diag)]``.

    Args:
        first: ``(B, K, D)`` intents of view 1.
        second: ``(B, K, D)`` intents of view 2.
        temperature: ``τ > 0``.

    Returns:
        A scalar; ``0`` for a batch of one user (no negatives, the positive has probability 1).
    """
    if first.shape != second.shape or first.ndim != 3:
        raise ValueError(
            f"intent_info_nce: expected two (B, K, D) tensors of the same shape, got "
            f"{tuple(first.shape)} and {tuple(second.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"intent_info_nce: temperature must be positive, got {temperature}")
    z1 = F.normalize(first, dim=-1).transpose(0, 1)  # (K, B, D)
    z2 = F.normalize(second, dim=-1).transpose(0, 1)
    logits = z1 @ z2.transpose(1, 2) / temperature  # (K, B, B)
    k, b, _ = logits.shape
    labels = torch.arange(b, device=logits.device).repeat(k)
    forward = F.cross_entropy(logits.reshape(k * b, b), labels)
    backward = F.cross_entropy(logits.transpose(1, 2).reshape(k * b, b), labels)
    return 0.5 * (forward + backward)


class IntentReasonerLayer(nn.Module):
    """One IDR layer: intent deliberation, then decision making, both pre-norm with residuals.

    ``r ← r + CA(LN(r), LN(I))``; ``r ← r + FFN(LN(r))`` (deliberation over the intents ``I``), then
    ``r ← r + CA(LN(r), LN(H), mask)``; ``r ← r + FFN(LN(r))`` (decision over the item states ``H``).

    Args:
        dim: Width of the reasoning tokens, intents and item states.
        cross_attention: Factory of the two cross-attention mixers (they must accept ``context=``).
        dropout: Dropout on both attention outputs and inside the FFNs.
        layer_idx: Index of this layer in the reasoner; the mixers get indices ``2i`` and ``2i + 1``.
        num_layers: Number of reasoner layers; the mixers are told ``2 · num_layers``.
    """

    def __init__(
        self,
        dim: int,
        cross_attention: CrossAttentionFactory,
        *,
        dropout: float = 0.0,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__()
        depth = 2 * num_layers
        self.norm_query_intent = nn.LayerNorm(dim)
        self.norm_intent = nn.LayerNorm(dim)
        self.attn_intent = cross_attention(dim, layer_idx=2 * layer_idx, num_layers=depth)
        self.norm_ffn_intent = nn.LayerNorm(dim)
        self.ffn_intent = Mlp(dim, 4 * dim, drop=dropout)
        self.norm_query_seq = nn.LayerNorm(dim)
        self.norm_seq = nn.LayerNorm(dim)
        self.attn_seq = cross_attention(dim, layer_idx=2 * layer_idx + 1, num_layers=depth)
        self.norm_ffn_seq = nn.LayerNorm(dim)
        self.ffn_seq = Mlp(dim, 4 * dim, drop=dropout)
        self.drop = nn.Dropout(dropout)
        for mixer in (self.attn_intent, self.attn_seq):
            if not getattr(mixer, "supports_context", False):
                raise ValueError(
                    f"IntentReasonerLayer: cross_attention built {type(mixer).__name__}, which does not "
                    "take `context`; the reasoner needs a cross-attention mixer (e.g. CrossAttention)"
                )

    def forward(self, tokens: Tensor, intents: Tensor, states: Tensor, state_mask: Tensor) -> Tensor:
        """Update the reasoning tokens.

        Args:
            tokens: ``(B, R, D)`` reasoning tokens.
            intents: ``(B, K, D)`` intents.
            states: ``(B, L, D)`` item-sequence states.
            state_mask: ``(B, L)`` bool, True = a real item (may be attended).

        Returns:
            ``(B, R, D)``.
        """
        context = self.norm_intent(intents)
        tokens = tokens + self.drop(self.attn_intent(self.norm_query_intent(tokens), context=context))
        tokens = tokens + self.ffn_intent(self.norm_ffn_intent(tokens))
        context = self.norm_seq(states)
        query = self.norm_query_seq(tokens)
        tokens = tokens + self.drop(self.attn_seq(query, context=context, mask=state_mask))
        return tokens + self.ffn_seq(self.norm_ffn_seq(tokens))


class IGRSR(SeqRecNetwork):
    """IGR-SR: a frozen SASRec distils ``K`` intents; reasoning tokens deliberate over them, then decide.

    Data flow for a batch of left-padded histories ``items (B, L)``:

    1. **Sequence states** ``H = encoder.encode(items)`` ``(B, L, D)``: the plain SASRec pass (frozen, so
       it builds no autograd graph). ``H[:, -1]`` is SASRec's own user vector.
    2. **LID**: ``encoder.transform([prefix (P); encoder.embed(items) (L); intent tokens (K)])`` with the
       causal mask and key padding (prefix and intent tokens are always real), intents
       ``I = MLP(out[:, P + L:])`` ``(B, K, D)``. Items keep SASRec's learned positions (from ``embed``);
       the prefix and intent tokens are free vectors in the embedded space (no position added: each sits
       in a fixed slot, so any positional signal is learnt into the token itself). Gradients reach the
       tokens *through* the frozen encoder.
    3. **IDR**: ``R`` reasoning tokens run ``reasoner_layers`` :class:`IntentReasonerLayer` s over ``I``
       and ``H``; ``r = LN(mean_R(tokens))``.
    4. **User vector**: ``u = H[:, -1] + g · r`` with a learnable scalar gate ``g`` initialised to 0
       (``residual=True``, default), so training starts from the pre-trained SASRec's prediction and the
       reasoner learns a correction; ``u = r`` with ``residual=False`` (the paper's literal form).
    5. **Scores** ``u · E[i]`` with the encoder's item table ``E`` (``output_table="shared"``: frozen with
       the encoder; the paper scores with "the item embeddings"), or with a trainable copy of it
       (``output_table="finetune"``, initialised from the encoder's table on :meth:`load_encoder_state`).

    Injection points: ``attention`` is the encoder's self-attention (passed to :class:`SASRec`, so a
    checkpoint of SASRec trained with the same ``--model.attention`` loads); ``cross_attention`` builds the
    reasoner's ``2 · reasoner_layers`` cross-attention mixers, default
    :class:`~core.attention.CrossAttention` with ``num_heads`` heads.

    With ``freeze_encoder=True`` (default, the paper) the encoder has ``requires_grad=False`` and stays in
    eval mode even after ``.train()`` (no dropout: its function is fixed); only the prefix and intent
    tokens, the projection, the reasoner and the gate train. A frozen encoder is only useful with
    pre-trained weights: give ``encoder_checkpoint`` (or call :meth:`load_encoder_state`).
    ``freeze_encoder=False`` trains everything end to end (useful without a checkpoint, and as an
    ablation).

    Args:
        num_items: Catalogue size; item ids are ``1..num_items``, ``0`` = padding.
        max_len: Longest history (SASRec's position table).
        hidden_dim: Width ``D``; must match the SASRec checkpoint.
        num_layers: SASRec blocks of the encoder; must match the checkpoint.
        num_heads: Heads of the encoder's default attention and of the default cross-attention.
        dropout: Dropout of the encoder (when trainable), the projection and the reasoner.
        num_intents: Intent tokens ``K``.
        num_prefix: Prefix tokens ``P`` (0 disables them).
        num_reasoning_tokens: Reasoning tokens ``R``; the user vector is their mean.
        reasoner_layers: IDR layers (each = deliberation + decision).
        icr_weight: ``λ`` of the intent-consistency InfoNCE (0 disables it).
        icr_temperature: InfoNCE temperature ``τ``.
        icr_mask_ratio: Probability of dropping each item in an ICR view.
        freeze_encoder: Freeze the SASRec encoder (and, with ``output_table="shared"``, the item table).
        residual: Add the gated reasoner output to SASRec's last state (True) or use it alone (False).
        output_table: ``shared`` (score with the encoder's item table) or ``finetune`` (a trainable copy).
        attention: Factory of the encoder's self-attention; default SASRec's own.
        cross_attention: Factory of the reasoner's cross-attention; default
            ``CrossAttention(num_heads=num_heads)``.
        encoder_checkpoint: A SASRec checkpoint (a ``.ckpt`` of the recsys task with
            ``--model.network=SASRec``, or a plain state dict), or the ``default_root_dir`` of such a run
            (its best checkpoint is used), loaded into the encoder with :meth:`load_encoder_state` when the
            network is built. The SASRec must have this network's ``hidden_dim``, ``num_layers``,
            ``num_heads``, ``max_len``, ``num_items`` and attention. None or ``""`` loads nothing (on the
            command line, an empty ``--model.network.encoder_checkpoint=`` clears a config's checkpoint).
    """

    objective = "last"

    def __init__(
        self,
        num_items: int,
        max_len: int,
        hidden_dim: int = 64,
        num_layers: int = 2,
        num_heads: int = 1,
        dropout: float = 0.2,
        num_intents: int = 4,
        num_prefix: int = 2,
        num_reasoning_tokens: int = 1,
        reasoner_layers: int = 2,
        icr_weight: float = 0.1,
        icr_temperature: float = 0.2,
        icr_mask_ratio: float = 0.2,
        freeze_encoder: bool = True,
        residual: bool = True,
        output_table: Literal["shared", "finetune"] = "shared",
        attention: AttentionFactory | None = None,
        cross_attention: CrossAttentionFactory | None = None,
        encoder_checkpoint: str | None = None,
    ) -> None:
        super().__init__()
        minimum = {"num_items": 1, "max_len": 1, "hidden_dim": 1, "num_layers": 1, "num_heads": 1}
        minimum |= {"num_intents": 1, "num_prefix": 0, "num_reasoning_tokens": 1, "reasoner_layers": 1}
        values = {"num_items": num_items, "max_len": max_len, "hidden_dim": hidden_dim}
        values |= {"num_layers": num_layers, "num_heads": num_heads, "num_intents": num_intents}
        values |= {"num_prefix": num_prefix, "num_reasoning_tokens": num_reasoning_tokens}
        values |= {"reasoner_layers": reasoner_layers}
        for name, low in minimum.items():
            if values[name] < low:
                raise ValueError(f"IGRSR: {name} must be >= {low}, got {values[name]}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"IGRSR: dropout must be in [0, 1), got {dropout}")
        if icr_weight < 0:
            raise ValueError(f"IGRSR: icr_weight must be >= 0, got {icr_weight}")
        if icr_temperature <= 0:
            raise ValueError(f"IGRSR: icr_temperature must be > 0, got {icr_temperature}")
        if not 0.0 <= icr_mask_ratio < 1.0:
            raise ValueError(f"IGRSR: icr_mask_ratio must be in [0, 1), got {icr_mask_ratio}")
        if output_table not in ("shared", "finetune"):
            raise ValueError(f"IGRSR: output_table must be 'shared' or 'finetune', got {output_table!r}")
        if cross_attention is None:
            cross_attention = default_heads_factory(
                "IGRSR", num_heads, {"hidden_dim": hidden_dim}, cls=CrossAttention
            )
        self.num_items = num_items
        self.max_len = max_len
        self.hidden_dim = hidden_dim
        self.num_intents = num_intents
        self.num_prefix = num_prefix
        self.icr_weight = icr_weight
        self.icr_temperature = icr_temperature
        self.icr_mask_ratio = icr_mask_ratio
        self.freeze_encoder = freeze_encoder
        self.residual = residual
        self.output_table = output_table

        self.encoder = SASRec(
            num_items,
            max_len,
            hidden_dim=hidden_dim,
            num_layers=num_layers,
            num_heads=num_heads,
            dropout=dropout,
            attention=attention,
        )
        # LID: learnable prefix and <intent> tokens, and the two-layer projection.
        # SASRec's blocks LayerNorm their input first and restart the residual from it, so the scale of
        # these tokens does not matter to the encoder; unit scale keeps Adam's relative steps small.
        self.prefix_tokens = nn.Parameter(torch.randn(num_prefix, hidden_dim))
        self.intent_tokens = nn.Parameter(torch.randn(num_intents, hidden_dim))
        self.intent_proj = Mlp(hidden_dim, hidden_dim, hidden_dim, drop=dropout)
        # IDR.
        self.reasoning_tokens = nn.Parameter(torch.randn(num_reasoning_tokens, hidden_dim) * 0.02)
        self.reasoner = nn.ModuleList(
            IntentReasonerLayer(
                hidden_dim, cross_attention, dropout=dropout, layer_idx=i, num_layers=reasoner_layers
            )
            for i in range(reasoner_layers)
        )
        self.reasoner_norm = nn.LayerNorm(hidden_dim)
        self.gate = nn.Parameter(torch.zeros(())) if residual else None
        self.output_weight = (
            nn.Parameter(self.item_embedding.weight.detach().clone()) if output_table == "finetune" else None
        )
        # Saved with the model, so a restored IGR-SR checkpoint knows its encoder was pre-trained.
        self.register_buffer("encoder_loaded", torch.zeros((), dtype=torch.bool))
        if freeze_encoder:
            self.encoder.requires_grad_(False)
            self.encoder.eval()
        if encoder_checkpoint:
            self.load_encoder_state(read_state_dict(run_checkpoint(encoder_checkpoint)))

    # ----------------------------------------------------------------------------------------- modes

    def train(self, mode: bool = True) -> "IGRSR":
        """Set the training mode; a frozen encoder stays in eval mode (no dropout) regardless."""
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
            if mode and not bool(self.encoder_loaded):
                warnings.warn(
                    "IGRSR: training with a frozen encoder that was never loaded from a SASRec checkpoint "
                    "(random weights); give encoder_checkpoint (--model.network.encoder_checkpoint), call "
                    "load_encoder_state, or use freeze_encoder=False",
                    stacklevel=2,
                )
        return self

    @property
    def item_embedding(self) -> nn.Embedding:
        """The encoder's item table (``nn.Embedding(num_items + 1, D)``, row 0 = padding)."""
        table = getattr(self.encoder, "item_embedding", None)
        return table if isinstance(table, nn.Embedding) else self.encoder.item_emb

    def output_embedding(self) -> Tensor:
        """The ``(num_items + 1, D)`` table that :meth:`scores` ranks with."""
        if self.output_weight is not None:
            return self.output_weight
        return self.item_embedding.weight

    # ------------------------------------------------------------------------------------- loading

    def load_encoder_state(self, state_dict: Mapping[str, Tensor]) -> LoadReport:
        """Load a SASRec ``state_dict`` into the encoder and report what was used.

        Keys may carry a ``network.`` / ``model.`` / ``module.`` / ``encoder.`` prefix (a Lightning
        checkpoint of the recsys task, a wrapped model, an IGR-SR checkpoint); the first candidate name
        that is an encoder key is used. Keys that are not encoder tensors (other task state, IGR-SR's own
        parameters) are skipped and listed. Every encoder tensor must be present with the encoder's
        shape: a frozen encoder with random or mismatched parts would be useless.

        With ``output_table="finetune"`` the trainable output table is re-initialised from the loaded
        item table.

        Args:
            state_dict: Tensors by name.

        Returns:
            The :class:`~core.training.pretrained.LoadReport` (also logged).

        Raises:
            ValueError: If a shape differs (naming the key and both shapes) or encoder tensors are missing.
        """
        target = self.encoder.state_dict()
        report = LoadReport()
        to_load: dict[str, Tensor] = {}
        for key, tensor in state_dict.items():
            if not isinstance(tensor, Tensor):
                continue
            name = _match_key(key, target)
            if name is None:
                report.skipped[key] = "not a SASRec encoder tensor"
                continue
            if name in to_load:
                report.skipped[key] = f"duplicate of an already loaded {name!r}"
                continue
            if tensor.shape != target[name].shape:
                raise ValueError(
                    f"IGRSR.load_encoder_state: {key!r} has shape {tuple(tensor.shape)} in the checkpoint "
                    f"but encoder.{name} is {tuple(target[name].shape)}; build IGR-SR with the SASRec's "
                    "hidden_dim, num_layers, num_heads, max_len and num_items"
                )
            to_load[name] = tensor
            report.loaded.append(name)
        report.missing = [name for name in target if name not in to_load]
        if report.missing:
            raise ValueError(
                "IGRSR.load_encoder_state: the state dict is not a full SASRec: "
                f"{len(report.missing)} encoder tensors are missing, e.g. {report.missing[:5]}"
            )
        self.encoder.load_state_dict(to_load, strict=True)
        if self.output_weight is not None:
            with torch.no_grad():
                self.output_weight.copy_(self.item_embedding.weight)
        self.encoder_loaded.fill_(True)
        rank_zero_info("IGR-SR encoder from a SASRec state dict: " + report.summary())
        return report

    # ------------------------------------------------------------------------------------- forward

    def encode(self, items: Tensor) -> Tensor:
        """The encoder's per-position states ``(B, L, D)``: the item-sequence states the reasoner reads.

        ``scores(encode(items))`` is the frozen SASRec's own per-position prediction; IGR-SR's prediction
        is ``scores(user_vector(items))`` (the reasoner works per sequence, not per position).
        """
        _check_items(items, self.num_items)
        return self.encoder.encode(items)

    def intents(self, items: Tensor) -> Tensor:
        """LID: the projected intents ``(B, K, D)`` of ``items`` ``(B, L)``."""
        _check_items(items, self.num_items)
        batch, length = items.shape
        embedded = self.encoder.embed(items)
        prefix = self.prefix_tokens.to(embedded.dtype).expand(batch, -1, -1)
        intent = self.intent_tokens.to(embedded.dtype).expand(batch, -1, -1)
        ones = torch.ones(batch, 1, dtype=torch.bool, device=items.device)
        key_padding = torch.cat(
            [ones.expand(batch, self.num_prefix), items > 0, ones.expand(batch, self.num_intents)], dim=1
        )
        out = self.encoder.transform(
            torch.cat([prefix, embedded, intent], dim=1), key_padding=key_padding, is_causal=True
        )
        return self.intent_proj(out[:, self.num_prefix + length :])

    def reason(self, intents: Tensor, states: Tensor, state_mask: Tensor) -> Tensor:
        """IDR: the reasoned vector ``(B, D)`` from intents ``(B, K, D)`` and item states ``(B, L, D)``.

        ``state_mask`` ``(B, L)`` is True at real items; a row without any (an empty history) attends all
        positions rather than none, so it stays finite.
        """
        state_mask = state_mask | ~state_mask.any(dim=1, keepdim=True)
        tokens = self.reasoning_tokens.to(states.dtype).expand(states.shape[0], -1, -1)
        for layer in self.reasoner:
            tokens = layer(tokens, intents, states, state_mask)
        return self.reasoner_norm(tokens.mean(dim=1))

    def user_vector(self, items: Tensor) -> Tensor:
        """The ``(B, D)`` vector that :meth:`scores` ranks with, for left-padded histories ``(B, L)``."""
        states = self.encode(items)
        reasoned = self.reason(self.intents(items), states, items > 0)
        if self.gate is None:
            return reasoned
        return states[:, -1] + self.gate * reasoned

    def output_layer(self) -> tuple[Tensor, Tensor | None]:
        """``(weight, bias)`` with ``scores(h) == h · weightᵀ``, for the chunked full-catalogue CE."""
        return self.output_embedding(), None

    def scores(self, hidden: Tensor) -> Tensor:
        """Logits ``(..., num_items + 1)`` over the catalogue (column 0 is padding; the task masks it)."""
        return hidden @ self.output_embedding().t()

    # --------------------------------------------------------------------------------------- losses

    def extra_loss(self, items: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """``λ · InfoNCE`` between the intents of two randomly masked views of ``items`` ``(B, L)``.

        Both views go through the LID in one batched pass. Returns an exact zero (no encoder pass) when
        ``icr_weight`` is 0.
        """
        if self.icr_weight == 0:
            return self.prefix_tokens.new_zeros(())
        first, second = mask_views(items, self.icr_mask_ratio, generator=generator)
        intents = self.intents(torch.cat([first, second], dim=0))
        one, two = intents.chunk(2, dim=0)
        return self.icr_weight * intent_info_nce(one, two, self.icr_temperature)

    def training_loss(
        self, inputs: Tensor, targets: Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The training objective outside the task: last-position next-item CE plus the ICR term.

        Args:
            inputs: ``(B, L)`` left-padded histories (the train batch's ``items[:, :-1]``).
            targets: ``(B,)`` next items, or ``(B, L)`` shifted targets of which the last column is used.
            generator: Random generator of the ICR views.

        Returns:
            ``(loss, {"ce": ..., "icr": ...})`` with detached log values.
        """
        if targets.ndim == 2:
            targets = targets[:, -1]
        logits = self.scores(self.user_vector(inputs))
        logits = torch.cat([torch.full_like(logits[:, :1], float("-inf")), logits[:, 1:]], dim=1)
        ce = F.cross_entropy(logits, targets)
        icr = self.extra_loss(inputs, generator=generator)
        return ce + icr, {"ce": ce.detach(), "icr": icr.detach()}


def _match_key(key: str, target: Mapping[str, Tensor]) -> str | None:
    """The encoder key that ``key`` names once leading wrapper prefixes are removed, or None."""
    name = key
    while True:
        if name in target:
            return name
        prefix = next((p for p in _CHECKPOINT_PREFIXES if name.startswith(p)), None)
        if prefix is None:
            return None
        name = name[len(prefix) :]


def _check_items(items: Tensor, num_items: int) -> None:
    if items.ndim != 2 or items.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"IGRSR: expected items of shape (B, L) with integer ids, got {tuple(items.shape)} {items.dtype}"
        )
    if items.numel() and (int(items.min()) < 0 or int(items.max()) > num_items):
        raise ValueError(
            f"IGRSR: item ids must lie in 0..{num_items} (0 = padding), "
            f"got {int(items.min())}..{int(items.max())}"
        )
