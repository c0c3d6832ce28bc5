"""Faceptor's Layer-Attention: task queries attend the tokens of several encoder layers at once.

Paper: Qin et al., "Faceptor: A Generalist Model for Face Perception", arXiv 2403.09500 (2024),
§3.3 "Layer-Attention", official code lxq1000/Faceptor (``core/model/heads/decoder.py``,
``TransformerDecoderLevel``). The ViT encoder's outputs ``F_l ∈ R^{N×C}`` of ``L`` chosen layers
(official: layers 1, 3, 5, 7, 9, 11) are concatenated along the token axis and tagged with a learned
**layer embedding** ``e_l`` on the keys; a task's learned queries ``T`` (with query position embeddings
``P_T``) cross-attend all ``L·N`` tokens in one softmax::

    K = [F_1 + p + e_1; …; F_L + p + e_L] W_K,   V = [F_1; …; F_L] W_V
    T ← LN(T + softmax((T + P_T) W_Q Kᵀ / √d) V W_O)            (post-norm, DETR-style)

so each query's softmax weights over ``(layer, position)`` pairs decide which layers it draws from (the
attention mass per layer, ``Σ_n A[q, l, n]``, is the learned layer weighting). ``p`` is a per-token
position embedding shared by all layers (optional ``pos`` argument).

Differences from the official code:

* The official decoder stacks 9 such cross-attention layers, each followed by query self-attention and an
  FFN, and builds ``p`` from an MLP on 2-D sine "anchor" positions; those belong to the decoder, so this
  module is one Layer-Attention step and takes ``pos`` as an input.
* The official code keeps two embedding tables (``level_embed`` for layer 11, ``new_level_embed`` for the
  others); one ``(L, C)`` table here is the same set of parameters.
* Official layer embeddings and query features are ``nn.Embedding`` (N(0, 1) init), query position
  embeddings U(0, 1); we keep those initialisations. Queries are per task (``num_queries`` may list one
  count per task, selected with ``task=``).
* Masks: the official call passes none; ``mask (B, N)`` here pads token positions in every layer.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.cross import CrossAttention
from core.attention.mha import Backend
from core.attention.registry import register_mechanism

__all__ = ["LayerAttention"]


@register_mechanism(
    paper="Qin et al. 2024, Faceptor: A Generalist Model for Face Perception",
    complexity="O(Q L N d)",
    example_kwargs={
        "dim": 8,
        "num_layers": 3,
        "num_queries": (2, 1),
        "num_heads": 2,
        "norm_first": False,
        "qkv_bias": True,
        "attn_drop": 0.0,
        "backend": "auto",
    },
)
class LayerAttention(nn.Module):
    """Learned task queries cross-attend the concatenated tokens of ``L`` encoder layers.

    ``forward(layer_outputs (B, L, N, C)) -> (B, Q, C)``, ``Q`` the task's number of queries.

    Args:
        dim: Token width ``C``; divisible by ``num_heads``.
        num_layers: Number ``L`` of encoder layers fused (official: 6).
        num_queries: Queries of one task, or a tuple with one count per task (official e.g. recognition
            1 ... landmarks 101).
        num_heads: Attention heads (official: 8).
        norm_first: Pre-norm ``T + Attn(LN(T) + P_T, ...)`` instead of the official post-norm.
        qkv_bias: Bias of the q, k, v projections (``nn.MultiheadAttention``: yes).
        attn_drop: Dropout on the attention weights.
        backend: ``auto``/``sdpa`` or ``reference``.
    """

    def __init__(
        self,
        dim: int,
        num_layers: int,
        *,
        num_queries: int | Sequence[int] = 1,
        num_heads: int = 8,
        norm_first: bool = False,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        backend: Backend = "auto",
    ) -> None:
        super().__init__()
        counts = (num_queries,) if isinstance(num_queries, int) else tuple(num_queries)
        if num_layers < 1 or not counts or min(counts) < 1:
            raise ValueError(
                f"LayerAttention: num_layers and every num_queries must be positive, "
                f"got {num_layers}, {counts}"
            )
        self.dim, self.num_layers, self.num_queries = dim, num_layers, counts
        self.norm_first = norm_first
        self.layer_embed = nn.Parameter(torch.randn(num_layers, dim))
        self.query_feat = nn.ParameterList(nn.Parameter(torch.randn(q, dim)) for q in counts)
        self.query_pos = nn.ParameterList(nn.Parameter(torch.rand(q, dim)) for q in counts)
        self.attn = CrossAttention(
            dim, num_heads=num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, backend=backend
        )
        self.norm = nn.LayerNorm(dim)

    def forward(
        self,
        layer_outputs: Tensor,
        *,
        task: int = 0,
        queries: Tensor | None = None,
        pos: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """Fuse the layers' tokens into the task's queries.

        Args:
            layer_outputs: ``(B, L, N, C)``, the outputs of the ``L`` fused layers.
            task: Which task's learned queries to use.
            queries: Optional query features ``(B, Q, C)`` replacing the learned ones (e.g. the output of a
                previous decoder layer); the task's query position embedding still applies.
            pos: Optional position embedding of the tokens ``(B | 1, N, C)``, shared by all layers, added
                to the keys only.
            mask: Key padding ``(B, N)``, True = real token, applied in every layer.

        Returns:
            Updated queries ``(B, Q, C)``.
        """
        b, n = self._check(layer_outputs, task)
        query_pos = self.query_pos[task]
        if queries is None:
            queries = self.query_feat[task].expand(b, -1, -1)
        elif queries.shape != (b, query_pos.shape[0], self.dim):
            raise ValueError(
                f"LayerAttention: expected queries of shape ({b}, {query_pos.shape[0]}, {self.dim}), "
                f"got {tuple(queries.shape)}"
            )
        key_pos = self.layer_embed[:, None, :]  # (L, 1, C)
        if pos is not None:
            if pos.ndim != 3 or pos.shape[0] not in (1, b) or pos.shape[1:] != (n, self.dim):
                raise ValueError(
                    f"LayerAttention: expected pos of shape (B|1, {n}, {self.dim}), got {tuple(pos.shape)}"
                )
            key_pos = key_pos + pos[:, None]  # (B|1, L, N, C)
        memory = layer_outputs.flatten(1, 2)  # (B, L·N, C)
        key_pos = key_pos.expand(b, self.num_layers, n, self.dim).flatten(1, 2)
        if mask is not None:
            if mask.dtype != torch.bool or mask.shape != (b, n):
                raise ValueError(
                    f"LayerAttention: expected mask to be a boolean key padding of shape ({b}, {n}), "
                    f"got {tuple(mask.shape)} {mask.dtype}"
                )
            mask = mask.repeat(1, self.num_layers)  # layer-major, as the flattened memory
        if self.norm_first:
            return queries + self._attend(self.norm(queries) + query_pos, memory, key_pos, mask)
        return self.norm(queries + self._attend(queries + query_pos, memory, key_pos, mask))

    @classmethod
    def example_inputs(cls, batch: int, dtype: torch.dtype) -> tuple[Tensor, ...]:
        """Three layers of a 2×3 token grid of width 8."""
        return (torch.randn(batch, 3, 6, 8, dtype=dtype),)

    def _attend(self, query: Tensor, memory: Tensor, key_pos: Tensor, mask: Tensor | None) -> Tensor:
        """Cross-attention whose keys see ``memory + key_pos`` and values see ``memory`` (DETR convention)."""
        c = self.dim
        weight, bias = self.attn.kv.weight, self.attn.kv.bias
        k = F.linear(memory + key_pos, weight[:c], None if bias is None else bias[:c])
        v = F.linear(memory, weight[c:], None if bias is None else bias[c:])
        return self.attn.attend_heads(self.attn.q(query), k, v, mask, False)

    def _check(self, layer_outputs: Tensor, task: int) -> tuple[int, int]:
        if (
            layer_outputs.ndim != 4
            or layer_outputs.shape[1] != self.num_layers
            or layer_outputs.shape[-1] != self.dim
        ):
            raise ValueError(
                f"LayerAttention: expected layer_outputs of shape (B, {self.num_layers}, N, {self.dim}), "
                f"got {tuple(layer_outputs.shape)}"
            )
        if not 0 <= task < len(self.num_queries):
            raise ValueError(f"LayerAttention: task must be in [0, {len(self.num_queries)}), got {task}")
        return layer_outputs.shape[0], layer_outputs.shape[2]

    def extra_repr(self) -> str:
        """Show the width, the number of layers and the queries per task."""
        return (
            f"dim={self.dim}, num_layers={self.num_layers}, num_queries={self.num_queries}, "
            f"norm_first={self.norm_first}"
        )
