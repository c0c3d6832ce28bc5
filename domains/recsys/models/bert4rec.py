"""BERT4Rec: bidirectional self-attention over the item history, trained with the cloze objective.

Paper: Sun, Liu, Wu, Pei, Lin, Ou, Jiang, "BERT4Rec: Sequential Recommendation with Bidirectional Encoder
Representations from Transformer", CIKM 2019 (arXiv 1904.06690). Official code: ``FeiSun/BERT4Rec``
(TensorFlow 1, built on Google's BERT). The attention mechanism is injected, so any
:class:`~core.attention.TokenMixer` that takes a key-padding ``mask`` can replace multi-head attention.
"""

import torch
from torch import Tensor, nn

from core.attention import AttentionFactory, TokenMixer
from core.attention.mha import default_heads_factory
from domains.recsys.models.base import SeqRecNetwork, check_common, check_items

__all__ = ["BERT4Rec", "BERT4RecBlock"]

_INIT_STD = 0.02  # BERT's initializer_range


class BERT4RecBlock(nn.Module):
    """A post-LN (BERT) transformer layer: ``x = LN(x + drop(attn(x)))``, ``x = LN(x + drop(FFN(x)))``.

    The FFN is ``Linear(d, 4d) → GELU → Linear(4d, d)`` (BERT's intermediate/output layers; the ML-1M
    config has ``intermediate_size = 256 = 4 · 64``).

    Args:
        mixer: The attention mechanism (owns its projections and attention-weight dropout).
        dropout: Dropout on the attention and FFN outputs (BERT's ``hidden_dropout_prob``).
    """

    def __init__(self, mixer: TokenMixer, dropout: float) -> None:
        super().__init__()
        dim = mixer.dim
        self.attn = mixer
        self.attn_drop = nn.Dropout(dropout)
        self.attn_norm = nn.LayerNorm(dim, eps=1e-12)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.ffn_drop = nn.Dropout(dropout)
        self.ffn_norm = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, x: Tensor, key_padding: Tensor) -> Tensor:
        """Apply the layer to ``x (B, T, D)``; ``key_padding (B, T)`` is True at real tokens."""
        x = self.attn_norm(x + self.attn_drop(self.attn(x, mask=key_padding, is_causal=False)))
        return self.ffn_norm(x + self.ffn_drop(self.ffn(x)))


class BERT4Rec(SeqRecNetwork):
    """BERT4Rec: a bidirectional transformer encoder with a cloze (masked-item) objective.

    Vocabulary: ``num_items + 2`` embedding rows: 0 = padding, ``1..num_items`` = items,
    ``mask_token = num_items + 1``. Pipeline on left-padded ``items (B, L)``:

    1. ``E[items] + P[pos]`` → LayerNorm → dropout (BERT's embedding post-processor).
    2. ``num_layers`` post-LN :class:`BERT4RecBlock` s with **non-causal** attention and a key-padding mask.
    3. Output head (official ``get_masked_lm_output``): ``LN(GELU(W h + b))``, then logits against the
       tied item embedding plus an output bias: ``out · Eᵀ + b_out``. :meth:`encode` returns the states
       *after* this projection, so ``scores`` is only the tied product; it drops the mask-token column and
       returns ``num_items + 1`` columns (column 0 = padding).

    Positions: the official data is right-padded, so the oldest item of a window is at position 0. Our
    windows are left-padded, so positions are counted from the first real item (``cumsum(items > 0) - 1``):
    the same indexing as the official code, and left padding never changes the real tokens' states.

    Training (``objective = "cloze"``): the task replaces a random ``mask_prob`` share of the items with
    ``mask_token`` and trains CE at the masked positions (the official data generator also masks the last
    item alone in a share of the instances; that is the task's choice). Evaluation (:meth:`user_vector`,
    as in the official test data): append ``mask_token`` after the history, dropping the oldest position,
    and read the hidden state at the mask.

    Initialisation: truncated normal, std 0.02 (BERT) for the embeddings and this model's own Linear
    layers; the injected mixer keeps its own initialisation.

    Args:
        num_items: Catalogue size; item indices are ``1..num_items`` (0 = padding).
        max_len: Longest history (rows of the position table); linked from the datamodule. Official ML-1M:
            200, Amazon Beauty / Steam: 50.
        hidden_dim: Width ``d`` (official: 64; Steam 256).
        num_layers: Number of transformer layers (official: 2).
        num_heads: Heads of the default attention (official: 2); ignored when ``attention`` is given.
        dropout: Embedding, hidden and attention-weight (default attention only) dropout (official 0.2).
        mask_prob: Share of items the cloze task masks (official ML-1M: 0.2; Beauty 0.6, Steam 0.4). Stored
            as ``self.mask_prob``; the task reads it.
        attention: Factory of the attention mechanism, ``attention(d, layer_idx=i, num_layers=L)``; it must
            accept a key-padding ``mask``. Default: :class:`~core.attention.MultiHeadAttention` with
            ``num_heads`` heads and ``attn_drop=dropout``.
    """

    objective = "cloze"

    def __init__(
        self,
        num_items: int,
        max_len: int,
        hidden_dim: int = 64,
        num_layers: int = 2,
        num_heads: int = 2,
        dropout: float = 0.2,
        mask_prob: float = 0.2,
        attention: AttentionFactory | None = None,
    ) -> None:
        super().__init__()
        check_common("BERT4Rec", num_items, max_len, hidden_dim, num_layers, dropout)
        if not 0.0 < mask_prob < 1.0:
            raise ValueError(f"BERT4Rec: mask_prob must be in (0, 1), got {mask_prob}")
        if attention is None:
            widths = {"hidden_dim": hidden_dim}
            attention = default_heads_factory("BERT4Rec", num_heads, widths, attn_drop=dropout)
        self.num_items = num_items
        self.max_len = max_len
        self.hidden_dim = hidden_dim
        self.mask_prob = mask_prob
        self.mask_token = num_items + 1
        self.item_emb = nn.Embedding(num_items + 2, hidden_dim, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, hidden_dim)
        self.emb_norm = nn.LayerNorm(hidden_dim, eps=1e-12)
        self.emb_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            BERT4RecBlock(attention(hidden_dim, layer_idx=i, num_layers=num_layers), dropout)
            for i in range(num_layers)
        )
        self.out_proj = nn.Linear(hidden_dim, hidden_dim)
        self.out_act = nn.GELU()
        self.out_norm = nn.LayerNorm(hidden_dim, eps=1e-12)
        self.out_bias = nn.Parameter(torch.zeros(num_items + 2))
        self._init_own_weights()

    def _init_own_weights(self) -> None:
        own_linears = [self.out_proj]
        for block in self.blocks:
            own_linears += [m for m in block.ffn if isinstance(m, nn.Linear)]
        for module in (self.item_emb, self.pos_emb, *own_linears):
            nn.init.trunc_normal_(module.weight, std=_INIT_STD, a=-2 * _INIT_STD, b=2 * _INIT_STD)
        for linear in own_linears:
            nn.init.zeros_(linear.bias)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def encode(self, items: Tensor) -> Tensor:
        """Output-head states ``(B, L, D)`` of left-padded ``items`` (may contain ``mask_token``)."""
        check_items(items, self.max_len, "BERT4Rec")
        real = items > 0
        positions = (real.long().cumsum(dim=1) - 1).clamp(min=0)
        x = self.emb_drop(self.emb_norm(self.item_emb(items) + self.pos_emb(positions)))
        for block in self.blocks:
            x = block(x, real)
        return self.out_norm(self.out_act(self.out_proj(x)))

    def scores(self, hidden: Tensor) -> Tensor:
        """Logits ``(..., num_items + 1)``: ``hidden · Eᵀ + b`` over the catalogue (mask column dropped)."""
        catalogue = self.num_items + 1
        return hidden @ self.item_emb.weight[:catalogue].T + self.out_bias[:catalogue]

    def output_layer(self) -> tuple[Tensor, Tensor | None]:
        """``(weight, bias)`` with ``scores(h) == h · weightᵀ + bias``, for the chunked full-catalogue CE."""
        catalogue = self.num_items + 1
        return self.item_emb.weight[:catalogue], self.out_bias[:catalogue]

    def user_vector(self, items: Tensor) -> Tensor:
        """Append ``mask_token`` to the history and return the state at the mask ``(B, D)``.

        A full window (``L == max_len``) drops its oldest item to make room; a shorter one (a batch padded
        only to its longest history) keeps it, which is the same input as the full window whose oldest
        column is padding.
        """
        check_items(items, self.max_len, "BERT4Rec")
        mask = torch.full_like(items[:, :1], self.mask_token)
        history = items[:, 1:] if items.shape[1] == self.max_len else items
        return self.encode(torch.cat([history, mask], dim=1))[:, -1]
