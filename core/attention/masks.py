"""Mask²DiT's dual masks for multi-scene text-to-video transformers: builders, not mechanisms.

Paper: Qi, Yuan, Feng, Fang, Liu, Zhou, He, Xie, Zhang, "Mask²DiT: Dual Mask-based Diffusion Transformer
for Multi-Scene Long Video Generation", CVPR 2025 (arXiv 2503.19881). Official code:
``Tianhao-Qi/Mask2DiT`` (``videox_fun/models/cogvideox_transformer3d.py: CogVideoXAttnProcessor2_2``,
``scripts/cogvideox_fun/train_mask2dit.py``).

A video of ``S`` scenes has text tokens ``T_s`` (one prompt per scene) and video tokens ``V_s`` per scene,
concatenated for joint (MM-DiT) attention. The official layout is ``[T_1 … T_S | V_1 … V_S]``
(``layout="grouped"``, default); ``[T_1, V_1, T_2, V_2, …]`` is ``layout="interleaved"``.

* **Symmetric binary mask** (:func:`scene_mask`), used in every attention layer. With ``s(i)`` the scene
  of token ``i`` and ``v(i)`` whether it is a video token, ``M_ij = [s(i) = s(j)] ∨ [v(i) ∧ v(j)]``:
  ``T_s`` attends ``{T_s, V_s}``; ``V_s`` attends ``T_s`` and **all** video tokens. Each prompt conditions
  only its own segment while the visual tokens stay coherent across scenes. ``M`` is symmetric.
* **Segment-level conditional mask** (:func:`segment_conditional_mask`), for auto-regressive scene
  extension. It is *not* an attention mask: the attention keeps the symmetric mask, and a per-token mask
  ``m`` marks the segment being generated. In training (``cond_training``), the other segments' latents
  stay clean (``z = m ⊙ z_t + (1 − m) ⊙ z_0``), they get the timestep embedding of ``t = 0``
  (``timestep_conditioning = 0``), and the v-prediction loss is taken on ``m`` only. The official script
  always generates the last segment (``clip_idx = num_scenes − 1``); the model code accepts any index.

Use with any mask-supporting token mixer (True = may attend). An ``(N, N)`` pattern is passed as
``mask[None]`` (a 2-D mask means key padding to the mixers), or batched with :func:`batch_mask`::

    m = scene_mask([77, 77], [300, 300])  # two scenes
    out = MultiHeadAttention(dim)(x, mask=m[None])  # x: (B, 754, dim)
    out = MultiHeadAttention(dim)(x, mask=batch_mask(m, key_padding=text_is_real))

Differences from the official code: the official processor runs the mask as ``2 S`` SDPA calls (each
scene's text queries over ``[K_text_s, K_video_s]``, each scene's video queries over
``[K_text_s, K_video_all]``) and requires equal text and video lengths for every scene
(``max_text_seq_length`` and ``video_seq_length // num_scenes``). The builders here take per-scene
lengths, so scenes may differ in length; on equal lengths one masked call gives the same result as the
official loop (tested).
"""

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

__all__ = ["Layout", "batch_mask", "scene_mask", "scene_token_layout", "segment_conditional_mask"]

Layout = Literal["grouped", "interleaved"]


def _check_lengths(text_lengths: Sequence[int], video_lengths: Sequence[int]) -> tuple[list[int], list[int]]:
    texts, videos = [], []
    for arg, values, low, out in (
        ("text_lengths", text_lengths, 0, texts),
        ("video_lengths", video_lengths, 1, videos),
    ):
        if isinstance(values, Tensor):
            values = values.tolist()
        if isinstance(values, int | str) or not isinstance(values, Sequence) or len(values) == 0:
            raise ValueError(f"{arg} must be a non-empty sequence of ints, one per scene, got {values!r}")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{arg} must hold ints >= {low} (one per scene), got {list(values)}")
            out.append(int(v))
    if len(texts) != len(videos):
        raise ValueError(
            f"text_lengths and video_lengths must have one entry per scene each, got {len(texts)} and "
            f"{len(videos)} scenes"
        )
    return texts, videos


def scene_token_layout(
    text_lengths: Sequence[int],
    video_lengths: Sequence[int],
    *,
    layout: Layout = "grouped",
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Scene index and modality of every token of a multi-scene text+video sequence.

    Args:
        text_lengths: Text tokens of each scene ``(L_T1, …, L_TS)``; 0 is allowed.
        video_lengths: Video tokens of each scene ``(L_V1, …, L_VS)``; each >= 1.
        layout: ``"grouped"``: ``[T_1 … T_S | V_1 … V_S]`` (official); ``"interleaved"``:
            ``[T_1, V_1, …, T_S, V_S]``.
        device: Device of the returned tensors.

    Returns:
        ``(scene, is_video)``: ``(N,)`` long scene indices and ``(N,)`` booleans, ``N = Σ L_T + Σ L_V``.

    Raises:
        ValueError: On empty, negative or mismatched lengths, or an unknown layout.
    """
    texts, videos = _check_lengths(text_lengths, video_lengths)
    if layout not in ("grouped", "interleaved"):
        raise ValueError(f"layout must be 'grouped' or 'interleaved', got {layout!r}")
    # blocks of (scene, is_video, length) in sequence order
    text_blocks = [(s, False, n) for s, n in enumerate(texts)]
    video_blocks = [(s, True, n) for s, n in enumerate(videos)]
    if layout == "grouped":
        blocks = text_blocks + video_blocks
    else:
        blocks = [blk for pair in zip(text_blocks, video_blocks, strict=True) for blk in pair]
    sizes = torch.tensor([n for _, _, n in blocks], device=device)
    scene = torch.tensor([s for s, _, _ in blocks], device=device).repeat_interleave(sizes)
    is_video = torch.tensor([v for _, v, _ in blocks], device=device).repeat_interleave(sizes)
    return scene, is_video


def scene_mask(
    text_lengths: Sequence[int],
    video_lengths: Sequence[int],
    *,
    layout: Layout = "grouped",
    device: torch.device | str | None = None,
) -> Tensor:
    """Mask²DiT's symmetric binary mask: ``M_ij = [s(i) = s(j)] ∨ [v(i) ∧ v(j)]``.

    Text of scene ``s`` attends its own text and video; video of scene ``s`` attends its own text and
    every video token.

    Args:
        text_lengths: Text tokens per scene.
        video_lengths: Video tokens per scene (each >= 1).
        layout: ``"grouped"`` (official) or ``"interleaved"``; see :func:`scene_token_layout`.
        device: Device of the mask.

    Returns:
        Boolean ``(N, N)``, True = may attend. Pass it to a mixer as ``mask[None]`` or via :func:`batch_mask`.
    """
    scene, is_video = scene_token_layout(text_lengths, video_lengths, layout=layout, device=device)
    return (scene[:, None] == scene[None, :]) | (is_video[:, None] & is_video[None, :])


def segment_conditional_mask(
    text_lengths: Sequence[int],
    video_lengths: Sequence[int],
    *,
    target: int = -1,
    layout: Layout = "grouped",
    device: torch.device | str | None = None,
) -> Tensor:
    """Mask²DiT's segment-level conditional mask: the video tokens of the segment being generated.

    Per token, not an attention mask. True marks the ``target`` scene's video tokens: they are noised,
    get the sampled timestep and carry the loss. False marks the clean conditioning tokens (the other
    segments' video, at timestep 0) and all text tokens.

    Args:
        text_lengths: Text tokens per scene.
        video_lengths: Video tokens per scene (each >= 1).
        target: Index of the generated scene; negative counts from the end (official: the last, ``-1``).
        layout: ``"grouped"`` (official) or ``"interleaved"``.
        device: Device of the mask.

    Returns:
        Boolean ``(N,)``.

    Raises:
        ValueError: On bad lengths or a ``target`` outside ``[-S, S)``.
    """
    scene, is_video = scene_token_layout(text_lengths, video_lengths, layout=layout, device=device)
    num_scenes = len(video_lengths)
    if isinstance(target, bool) or not isinstance(target, int) or not -num_scenes <= target < num_scenes:
        raise ValueError(f"target must be a scene index in [-{num_scenes}, {num_scenes}), got {target!r}")
    return is_video & (scene == target % num_scenes)


def batch_mask(mask: Tensor, batch_size: int | None = None, *, key_padding: Tensor | None = None) -> Tensor:
    """Expand an ``(N, N)`` pattern to ``(B, 1, N, N)`` for a batch, optionally AND a key-padding mask.

    Args:
        mask: Boolean ``(N, N)`` pattern, True = may attend (e.g. :func:`scene_mask`).
        batch_size: ``B``; may be omitted when ``key_padding`` is given.
        key_padding: Optional boolean ``(B, N)``, True = real token; padded keys are masked for every query.

    Returns:
        Boolean ``(B, 1, N, N)`` (heads broadcast), accepted by every mask-supporting mixer.

    Raises:
        ValueError: If the shapes or dtypes do not fit.
    """
    if mask.dtype != torch.bool or mask.ndim != 2 or mask.shape[0] != mask.shape[1]:
        raise ValueError(f"mask must be a boolean (N, N) pattern, got {mask.dtype} {tuple(mask.shape)}")
    n = mask.shape[0]
    if key_padding is None:
        if batch_size is None or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int when key_padding is None, got {batch_size}")
        return mask[None, None].expand(batch_size, 1, n, n)
    b = key_padding.shape[0] if key_padding.ndim == 2 else -1
    if key_padding.dtype != torch.bool or key_padding.shape != (b, n) or batch_size not in (None, b):
        expected = f"({batch_size if batch_size is not None else 'B'}, {n})"
        raise ValueError(
            f"key_padding must be boolean of shape {expected}, "
            f"got {key_padding.dtype} {tuple(key_padding.shape)}"
        )
    return mask[None, None] & key_padding[:, None, None, :].to(mask.device)
