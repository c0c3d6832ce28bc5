"""GRU4Rec: a recurrent (non-attention) sequential baseline, in the RecBole formulation.

Paper: Hidasi, Karatzoglou, Baltrunas, Tikk, "Session-based Recommendations with Recurrent Neural
Networks", ICLR 2016 (arXiv 1511.06939). Official code: ``hidasib/GRU4Rec`` (Theano), which trains
one-hot inputs with session-parallel mini-batches and ranking losses (TOP1, BPR). We follow RecBole's
``GRU4Rec`` instead, the form used as a baseline in sequential-recommendation papers: item embedding →
dropout → GRU → dense → dot product with the item embedding.
"""

import torch
from torch import Tensor, nn

from domains.recsys.models.base import SeqRecNetwork, check_common, check_items

__all__ = ["GRU4Rec"]


class GRU4Rec(SeqRecNetwork):
    """GRU4Rec (RecBole-style): ``E[items]`` → dropout → ``num_layers`` GRU → ``Linear(gru_dim → d)``.

    Padding: the GRU has **no biases** (as RecBole's). With a zero padding embedding and a zero initial
    state, a bias-free GRU keeps its state exactly 0 over left padding
    (``h' = (1 - z) ⊙ tanh(0) + z ⊙ 0 = 0``), so left padding never changes the hidden states of the real
    items. Hidden states at padded positions are set to 0.

    Output: ``tie_weights=True`` (RecBole) scores with the input item embedding, ``h · Eᵀ``;
    ``tie_weights=False`` uses a separate output embedding ``Linear(d, num_items + 1)`` (weights and bias),
    closer to the original GRU4Rec whose output layer is separate from its input.

    Args:
        num_items: Catalogue size; item indices are ``1..num_items`` (0 = padding).
        max_len: Longest history; linked from the datamodule (the GRU itself has no length limit; longer
            windows are rejected for consistency with the other models).
        hidden_dim: Embedding width ``d`` (RecBole: 64).
        gru_dim: GRU state width (RecBole: 128).
        num_layers: GRU layers (RecBole: 1).
        dropout: Dropout on the input embeddings (RecBole ``dropout_prob``: 0.3).
        tie_weights: Share the item embedding with the output layer.
    """

    objective = "causal"

    def __init__(
        self,
        num_items: int,
        max_len: int,
        hidden_dim: int = 64,
        gru_dim: int = 128,
        num_layers: int = 1,
        dropout: float = 0.3,
        tie_weights: bool = True,
    ) -> None:
        super().__init__()
        check_common("GRU4Rec", num_items, max_len, hidden_dim, num_layers, dropout)
        if gru_dim < 1:
            raise ValueError(f"GRU4Rec: gru_dim must be >= 1, got {gru_dim}")
        self.num_items = num_items
        self.max_len = max_len
        self.hidden_dim = hidden_dim
        self.item_emb = nn.Embedding(num_items + 1, hidden_dim, padding_idx=0)
        self.emb_drop = nn.Dropout(dropout)
        self.gru = nn.GRU(hidden_dim, gru_dim, num_layers=num_layers, bias=False, batch_first=True)
        self.dense = nn.Linear(gru_dim, hidden_dim)
        self.output: nn.Linear | None = None if tie_weights else nn.Linear(hidden_dim, num_items + 1)
        # RecBole: xavier_normal_ for the embedding, xavier_uniform_ for the GRU weights.
        nn.init.xavier_normal_(self.item_emb.weight)
        for name, weight in self.gru.named_parameters():
            if name.startswith("weight"):
                nn.init.xavier_uniform_(weight)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def encode(self, items: Tensor) -> Tensor:
        """Hidden states ``(B, L, D)``; ``h[:, t]`` summarises items ``..t`` and predicts item ``t + 1``."""
        check_items(items, self.max_len, "GRU4Rec")
        real = (items > 0).unsqueeze(-1)
        x = self.emb_drop(self.item_emb(items)) * real.to(torch.get_default_dtype())
        out, _ = self.gru(x)
        return self.dense(out) * real.to(out.dtype)

    def scores(self, hidden: Tensor) -> Tensor:
        """Logits ``(..., num_items + 1)`` (column 0 = padding)."""
        if self.output is None:
            return hidden @ self.item_emb.weight.T
        return self.output(hidden)

    def output_embedding(self) -> Tensor:
        """The output item table ``(num_items + 1, D)`` for sampled losses (BCE with negatives).

        Tied: the input item embedding. Untied: the output layer's weight; its bias is then not part of the
        table (a sampled loss on dot products ignores it; :meth:`scores` includes it).
        """
        return self.item_emb.weight if self.output is None else self.output.weight

    def output_layer(self) -> tuple[Tensor, Tensor | None]:
        """``(weight, bias)`` with ``scores(h) == h · weightᵀ (+ bias)``, for the chunked catalogue CE."""
        if self.output is None:
            return self.item_emb.weight, None
        return self.output.weight, self.output.bias

    def user_vector(self, items: Tensor) -> Tensor:
        """The hidden state after the most recent item, ``(B, D)``."""
        return self.encode(items)[:, -1]
