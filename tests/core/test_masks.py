"""Mask²DiT mask builders: exact patterns, the official per-scene attention loop, and leakage.

The reference is the official processor's formulation written out in float64: for each scene ``s``, the
text queries attend ``[K_text_s, K_video_s]`` and the video queries attend ``[K_text_s, K_video_all]``.
Tolerances as in test_attention.py: forward atol 1e-5 / rtol 1e-4, gradients atol 1e-4 / rtol 1e-3.
"""

import copy
import math

import pytest
import torch

from core.attention import MultiHeadAttention
from core.attention.masks import batch_mask, scene_mask, scene_token_layout, segment_conditional_mask

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}


def grouped_indices(text_lengths, video_lengths):
    """Token indices of every scene's text and video in [T_1 … T_S | V_1 … V_S], by running offsets."""
    texts, videos, pos = [], [], 0
    for n in text_lengths:
        texts.append(list(range(pos, pos + n)))
        pos += n
    for n in video_lengths:
        videos.append(list(range(pos, pos + n)))
        pos += n
    return texts, videos


def per_scene_reference(x, mha: MultiHeadAttention, text_lengths, video_lengths):
    """The official CogVideoXAttnProcessor2_2 loop: 2·S attention calls over gathered keys."""
    b, n, c = x.shape
    heads, d = mha.num_heads, c // mha.num_heads
    q, k, v = mha.qkv(x).split(c, dim=-1)
    texts, videos = grouped_indices(text_lengths, video_lengths)
    all_video = [i for vid in videos for i in vid]
    out = torch.zeros(b, n, c, dtype=x.dtype)
    for s in range(len(texts)):
        for queries, keys in ((texts[s], texts[s] + videos[s]), (videos[s], texts[s] + all_video)):
            if not queries:
                continue
            for h in range(heads):
                sl = slice(h * d, (h + 1) * d)
                qs, ks, vs = q[:, queries, sl], k[:, keys, sl], v[:, keys, sl]
                w = torch.softmax(qs @ ks.transpose(1, 2) / math.sqrt(d), dim=-1)
                out[:, queries, sl] = w @ vs
    return mha.proj(out)


def test_scene_mask_pattern_by_rules() -> None:
    text, video = [2, 0, 1], [1, 3, 2]
    m = scene_mask(text, video)
    texts, videos = grouped_indices(text, video)
    n = sum(text) + sum(video)
    assert m.shape == (n, n) and m.dtype == torch.bool
    expected = torch.zeros(n, n, dtype=torch.bool)
    all_video = [i for vid in videos for i in vid]
    for s in range(3):
        for i in texts[s]:
            for j in texts[s] + videos[s]:
                expected[i, j] = True
        for i in videos[s]:
            for j in texts[s] + all_video:
                expected[i, j] = True
    assert torch.equal(m, expected)
    assert torch.equal(m, m.T)


def test_interleaved_layout_is_a_permutation_of_grouped() -> None:
    text, video = [2, 1, 3], [2, 4, 1]
    grouped, inter = scene_mask(text, video), scene_mask(text, video, layout="interleaved")
    texts, videos = grouped_indices(text, video)
    order = torch.tensor([i for s in range(3) for i in texts[s] + videos[s]])  # interleaved → grouped index
    assert torch.equal(inter, grouped[order][:, order])
    scene, is_video = scene_token_layout(text, video, layout="interleaved")
    assert scene.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2]
    flags = [0, 0, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 1]
    assert is_video.tolist() == [bool(f) for f in flags]


@pytest.mark.parametrize(
    ("text", "video"), [([3, 3, 3], [4, 4, 4]), ([2, 4], [5, 3])], ids=["equal", "ragged"]
)
def test_mha_with_scene_mask_equals_per_scene_loop(text, video) -> None:
    n = sum(text) + sum(video)
    mha = MultiHeadAttention(8, num_heads=2)
    ref = copy.deepcopy(mha).double()
    x = torch.randn(2, n, 8, requires_grad=True)
    x64 = x.detach().double().requires_grad_(True)
    out = mha(x, mask=scene_mask(text, video)[None])
    expected = per_scene_reference(x64, ref, text, video)
    torch.testing.assert_close(out.double(), expected, **FWD)
    g = torch.randn_like(out)
    out.backward(g)
    expected.backward(g.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, **GRAD)
    for p, p64 in zip(mha.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad.double(), p64.grad, **GRAD)


def test_scene_2_text_does_not_reach_scene_1() -> None:
    """One layer: changing T_2 leaves T_1 and V_1 unchanged but changes V_2 (it attends T_2)."""
    text, video = [3, 3], [4, 4]
    texts, videos = grouped_indices(text, video)
    mha = MultiHeadAttention(8, num_heads=2).double()
    mask = batch_mask(scene_mask(text, video), 2)
    x = torch.randn(2, 14, 8, dtype=torch.float64)
    y = x.clone()
    y[:, texts[1]] += torch.randn(2, 3, 8, dtype=torch.float64)
    a, c = mha(x, mask=mask), mha(y, mask=mask)
    scene1 = texts[0] + videos[0]
    torch.testing.assert_close(a[:, scene1], c[:, scene1], atol=0, rtol=0)
    assert not torch.allclose(a[:, videos[1]], c[:, videos[1]])
    # video tokens do reach other scenes' video: changing V_2 changes V_1 but not T_1
    z = x.clone()
    z[:, videos[1]] += torch.randn(2, 4, 8, dtype=torch.float64)
    e = mha(z, mask=mask)
    assert not torch.allclose(a[:, videos[0]], e[:, videos[0]])
    torch.testing.assert_close(a[:, texts[0]], e[:, texts[0]], atol=0, rtol=0)


def test_batch_mask_with_key_padding() -> None:
    text, video = [3, 2], [3, 3]
    m = scene_mask(text, video)
    pad = torch.ones(2, 11, dtype=torch.bool)
    pad[0, 2] = False  # a padded text token of scene 1 in sample 0
    pad[1, 4] = False  # a padded text token of scene 2 in sample 1
    bm = batch_mask(m, key_padding=pad)
    assert bm.shape == (2, 1, 11, 11)
    assert torch.equal(bm[0, 0], m & pad[0][None, :]) and torch.equal(bm[1, 0], m & pad[1][None, :])
    assert torch.equal(batch_mask(m, 3), m[None, None].expand(3, 1, 11, 11))
    mha = MultiHeadAttention(8, num_heads=2).double()
    x = torch.randn(2, 11, 8, dtype=torch.float64)
    y = x.clone()
    y[~pad] += 10 * torch.randn_like(y[~pad])
    a, c = mha(x, mask=bm), mha(y, mask=bm)
    torch.testing.assert_close(a[pad], c[pad])


def test_segment_conditional_mask() -> None:
    text, video = [2, 1, 3], [2, 4, 1]
    _, videos = grouped_indices(text, video)
    last = segment_conditional_mask(text, video)
    assert last.shape == (13,) and last.nonzero().flatten().tolist() == videos[2]
    middle = segment_conditional_mask(text, video, target=1)
    assert middle.nonzero().flatten().tolist() == videos[1]
    assert torch.equal(segment_conditional_mask(text, video, target=-2), middle)
    inter = segment_conditional_mask(text, video, target=0, layout="interleaved")
    assert inter.nonzero().flatten().tolist() == [2, 3]
    # usage as in the official cond_training: clean context, noised target, loss on the target only
    clean, noisy = torch.zeros(13), torch.ones(13)
    mixed = torch.where(last, noisy, clean)
    assert mixed.sum() == video[2]


def test_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="one entry per scene"):
        scene_mask([1, 2], [3])
    with pytest.raises(ValueError, match="video_lengths"):
        scene_mask([1], [0])
    with pytest.raises(ValueError, match="text_lengths"):
        scene_mask([-1], [2])
    with pytest.raises(ValueError, match="text_lengths"):
        scene_mask([], [])
    with pytest.raises(ValueError, match="video_lengths"):
        scene_mask([1], 3)
    with pytest.raises(ValueError, match="text_lengths"):
        scene_mask([1.5], [3])
    with pytest.raises(ValueError, match="layout"):
        scene_mask([1], [2], layout="other")
    with pytest.raises(ValueError, match="target"):
        segment_conditional_mask([1, 1], [2, 2], target=2)
    m = scene_mask([1], [2])
    with pytest.raises(ValueError, match=r"mask must be a boolean \(N, N\)"):
        batch_mask(m.float(), 2)
    with pytest.raises(ValueError, match="batch_size"):
        batch_mask(m)
    with pytest.raises(ValueError, match=r"key_padding must be boolean of shape \(B, 3\)"):
        batch_mask(m, key_padding=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"key_padding must be boolean of shape \(5, 3\)"):
        batch_mask(m, 5, key_padding=torch.ones(2, 3, dtype=torch.bool))
    assert scene_mask(torch.tensor([1, 2]), torch.tensor([2, 2])).shape == (7, 7)
