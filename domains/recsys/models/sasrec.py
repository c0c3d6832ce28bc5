"""SASRec: self-attentive sequential recommendation with causal self-attention over the item history.

Paper: Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018 (arXiv 1808.09781).
Official code: ``kang205/SASRec`` (TensorFlow 1); the common PyTorch port is ``pmixer/SASRec.pytorch``.
The block layout, the embedding scale and the position indexing follow the official code; the attention
mechanism is injected (any :class:`~core.attention.TokenMixer` that supports ``is_causal``), so
``--model.attention=<Name>`` swaps it.
"""

import math

import torch
from torch import Tensor, nn

from core.attention import AttentionFactory, TokenMixer
from core.attention.mha import default_heads_factory
from domains.recsys.models.base import SeqRecNetwork, check_common, check_items

__all__ = ["SASRec", "SASRecBlock"]


class PointWiseFeedForward(nn.Module):
    """SASRec's point-wise FFN: two width-``d`` 1x1 convolutions (= Linear) with ReLU and dropout.

    ``drop(W2 · drop(ReLU(W1 x)))``, without the residual (the block adds it). Official code:
    ``conv1d(relu) → dropout → conv1d → dropout``, both of width ``d`` (no 4x expansion).
    """

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, dim)
        self.fc2 = nn.Linear(dim, dim)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the FFN to the last dimension."""
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class SASRecBlock(nn.Module):
    """One SASRec block, as in the official code (not the textbook pre-LN block).

    ``h = LN1(x); x = h + attn(h); h = LN2(x); x = h + FFN(h); x = x · pad_mask``.

    The residuals start from the *normalised* input (official: ``outputs += queries`` with
    ``queries = normalize(seq)``, and ``feedforward(normalize(seq))`` adds its own input).

    Deviation: the official attention uses ``LN1(x)`` as queries and the raw ``x`` as keys/values. The
    :class:`~core.attention.TokenMixer` contract takes one input, so here queries, keys and values all
    come from ``LN1(x)`` (as in the pre-LN transformer and pmixer's ``norm_first`` option).

    Args:
        mixer: The attention mechanism (owns its projections and attention dropout).
        dropout: Dropout inside the FFN.
    """

    def __init__(self, mixer: TokenMixer, dropout: float) -> None:
        super().__init__()
        dim = mixer.dim
        self.attn_norm = nn.LayerNorm(dim, eps=1e-8)
        self.attn = mixer
        self.ffn_norm = nn.LayerNorm(dim, eps=1e-8)
        self.ffn = PointWiseFeedForward(dim, dropout)

    def forward(self, x: Tensor, key_padding: Tensor, is_causal: bool) -> Tensor:
        """Apply the block to ``x (B, T, D)``; ``key_padding (B, T)`` is True at real tokens."""
        h = self.attn_norm(x)
        x = h + self.attn(h, mask=key_padding, is_causal=is_causal)
        h = self.ffn_norm(x)
        x = h + self.ffn(h)
        return x * key_padding.unsqueeze(-1).to(x.dtype)


class SASRec(SeqRecNetwork):
    """SASRec: item + learned position embeddings, causal self-attention blocks, tied output embedding.

    Pipeline on left-padded ``items (B, L)`` (0 = padding, most recent item last):

    1. ``embed``: ``E[items] · √d + P[pos]``, dropout, then padded positions zeroed. The ``√d`` scale is the
       official code's (``embedding(..., scale=True)``; pmixer: ``seqs *= d ** 0.5``).
    2. ``transform``: ``num_layers`` :class:`SASRecBlock` s (causal attention, key-padding mask, padded
       positions zeroed after every block), then a final LayerNorm; padded positions are set to 0.
    3. ``scores(h) = h · Eᵀ``: the item embedding (unscaled) is shared with the output layer, so the logits
       cover ``num_items + 1`` columns (column 0 = padding; the task masks it).

    Positions: the official code adds ``P[0..L-1]`` over the padded window, i.e. the most recent item is
    always at index ``maxlen - 1`` (pmixer: ``1..L`` with 0 for padding). Here the positions are
    right-aligned to ``max_len``: a window of length ``L <= max_len`` uses ``P[max_len-L .. max_len-1]``.
    For ``L == max_len`` (training) this is the official indexing exactly, and a shorter left-padded
    window gives the same hidden states as the same history padded to ``max_len``.

    Training objective (``objective = "causal"``): the hidden state at position ``t`` predicts the item at
    ``t + 1``. The official code trains with binary cross-entropy on one sampled negative per position;
    the task chooses the loss (full softmax CE is the common, stronger choice).

    Deviations from the official code: keys/values come from ``LN(x)`` (see :class:`SASRecBlock`); the
    injected mixer has its own output projection (the TF code has none; pmixer's ``nn.MultiheadAttention``
    has one); LayerNorm ``eps=1e-8`` as in both official versions.

    Args:
        num_items: Catalogue size; item indices are ``1..num_items`` (0 = padding).
        max_len: Longest history (rows of the position table); linked from the datamodule.
        hidden_dim: Width ``d``. Paper: 50; default 64 so that 1, 2, 4 and 8 heads divide it.
        num_layers: Number of blocks (paper: 2).
        num_heads: Heads of the default attention (paper: 1); ignored when ``attention`` is given.
        dropout: Embedding, attention-weight (default attention only) and FFN dropout. Paper: 0.5 on the
            sparse Amazon data, 0.2 on MovieLens-1M; the configs set it.
        attention: Factory of the attention mechanism, called as ``attention(d, layer_idx=i,
            num_layers=num_layers)``; it must support ``mask`` and ``is_causal``. Default:
            :class:`~core.attention.MultiHeadAttention` with ``num_heads`` heads and ``attn_drop=dropout``.
    """

    objective = "causal"

    def __init__(
        self,
        num_items: int,
        max_len: int,
        hidden_dim: int = 64,
        num_layers: int = 2,
        num_heads: int = 1,
        dropout: float = 0.2,
        attention: AttentionFactory | None = None,
    ) -> None:
        super().__init__()
        check_common("SASRec", num_items, max_len, hidden_dim, num_layers, dropout)
        if attention is None:
            widths = {"hidden_dim": hidden_dim}
            attention = default_heads_factory("SASRec", num_heads, widths, attn_drop=dropout)
        self.num_items = num_items
        self.max_len = max_len
        self.hidden_dim = hidden_dim
        self.item_emb = nn.Embedding(num_items + 1, hidden_dim, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, hidden_dim)
        self.emb_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            SASRecBlock(attention(hidden_dim, layer_idx=i, num_layers=num_layers), dropout)
            for i in range(num_layers)
        )
        for i, block in enumerate(self.blocks):
            if not block.attn.supports_causal:
                raise ValueError(
                    f"SASRec: attention {type(block.attn).__name__} (layer {i}) does not support is_causal; "
                    "SASRec needs causal attention"
                )
        self.final_norm = nn.LayerNorm(hidden_dim, eps=1e-8)
        # Official TF: Xavier (Glorot) initialisation of the embedding tables; pmixer: xavier_normal_.
        nn.init.xavier_normal_(self.item_emb.weight)
        nn.init.xavier_normal_(self.pos_emb.weight)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def embed(self, items: Tensor) -> Tensor:
        """Item embeddings ``· √d`` plus right-aligned learned positions, dropout, padding zeroed.

        Args:
            items: ``(B, L)`` left-padded item indices, ``L <= max_len``.

        Returns:
            ``(B, L, D)``; rows at padding are 0.
        """
        check_items(items, self.max_len, "SASRec")
        length = items.shape[1]
        positions = torch.arange(self.max_len - length, self.max_len, device=items.device)
        x = self.item_emb(items) * math.sqrt(self.hidden_dim) + self.pos_emb(positions)
        x = self.emb_drop(x)
        return x * (items > 0).unsqueeze(-1).to(x.dtype)

    def transform(self, h: Tensor, *, key_padding: Tensor, is_causal: bool = True) -> Tensor:
        """Run the blocks and the final LayerNorm on embedded tokens.

        IGR-SR feeds prefix and intent tokens through a frozen SASRec with this method, so ``T`` may exceed
        ``max_len`` (no positions are added here).

        Args:
            h: ``(B, T, D)`` token embeddings (e.g. from :meth:`embed`).
            key_padding: ``(B, T)`` bool, True = real token (may be attended); False rows are zeroed.
            is_causal: Causal attention (SASRec: True).

        Returns:
            ``(B, T, D)`` hidden states; 0 at padded positions.
        """
        if h.ndim != 3 or h.shape[-1] != self.hidden_dim:
            raise ValueError(
                f"SASRec.transform: expected h of shape (B, T, {self.hidden_dim}), got {tuple(h.shape)}"
            )
        if key_padding.dtype != torch.bool or key_padding.shape != h.shape[:2]:
            raise ValueError(
                f"SASRec.transform: expected key_padding of dtype bool and shape {tuple(h.shape[:2])} "
                f"(True = real token), got {key_padding.dtype} {tuple(key_padding.shape)}"
            )
        for block in self.blocks:
            h = block(h, key_padding, is_causal)
        return self.final_norm(h) * key_padding.unsqueeze(-1).to(h.dtype)

    def encode(self, items: Tensor) -> Tensor:
        """Hidden states ``(B, L, D)`` of left-padded ``items``; ``h[:, t]`` predicts item ``t + 1``."""
        return self.transform(self.embed(items), key_padding=items > 0, is_causal=True)

    def scores(self, hidden: Tensor) -> Tensor:
        """Logits ``(..., num_items + 1)`` = ``hidden · Eᵀ``, the shared item embedding (column 0 = pad)."""
        return hidden @ self.item_emb.weight.T

    def output_embedding(self) -> Tensor:
        """The output item table ``(num_items + 1, D)`` used by :meth:`scores` (for sampled losses)."""
        return self.item_emb.weight

    def output_layer(self) -> tuple[Tensor, Tensor | None]:
        """``(weight, bias)`` with ``scores(h) == h · weightᵀ (+ bias)``, for the chunked catalogue CE."""
        return self.item_emb.weight, None

    def user_vector(self, items: Tensor) -> Tensor:
        """The hidden state after the most recent item: ``encode(items)[:, -1]``, shape ``(B, D)``."""
        return self.encode(items)[:, -1]
