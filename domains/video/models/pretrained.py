"""Initialise a :class:`~domains.video.models.timesformer.TimeSformer` from image-ViT weights (timm layout).

TimeSformer is trained from an ImageNet ViT (official ``timesformer/models/helpers.py: load_pretrained``).
The image checkpoint has ``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.<i>.{norm1, attn.qkv,
attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``norm`` and ``head``; the video model adds:

* ``time_embed``: kept at its initial zeros;
* for divided space-time: ``temporal_attn`` and ``temporal_norm1`` copied from the block's spatial
  ``attn`` and ``norm1`` (as the official loader), ``temporal_fc`` left at its initialisation (zero except
  in the first block);
* ``pos_embed``: resized with nearest interpolation when the patch grid differs (official), and its CLS
  entry dropped for a model with mean pooling;
* ``head``: kept only when its shape matches (same number of classes), else left at initialisation.

Any other mismatch (a key the model lacks, e.g. when a non-default mechanism was injected, or a shape that
cannot be resized) is an error naming the keys.
"""

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from core.utils import InputError, InputFileNotFoundError

if TYPE_CHECKING:
    from domains.video.models.timesformer import TimeSformer

__all__ = ["load_image_vit", "read_state_dict"]

log = logging.getLogger(__name__)

# parameters of timm ViTs that have no counterpart here and carry nothing when at their defaults
_IGNORED = ("fc_norm.", "head_drop.", "norm_pre.")


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from ``.pth``/``.pt``/``.bin`` (``torch.save``) or ``.safetensors``.

    Nested checkpoints (``{"model": ...}``, ``{"state_dict": ...}``) are unwrapped and a leading ``module.``
    (DataParallel) is removed.

    Raises:
        InputFileNotFoundError: If the file does not exist.
        InputError: If it holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFoundError(f"image-ViT checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not any(isinstance(v, Tensor) for v in state.values()):
        raise InputError(
            f"{path}: expected a state dict of tensors (timm layout), found {type(state).__name__}"
        )
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, Tensor)}


def load_image_vit(model: "TimeSformer", path: str | Path) -> dict[str, list[str]]:
    """Load image-ViT weights into ``model`` in place (see the module docstring for the mapping).

    Args:
        model: The TimeSformer to initialise.
        path: timm-layout checkpoint.

    Returns:
        ``{"loaded": [...], "initialised": [...], "resized": [...]}``: parameter names by what happened.

    Raises:
        InputError: On keys the model lacks or shapes that cannot be mapped, naming them and the file.
    """
    source = {k: v for k, v in read_state_dict(path).items() if not k.startswith(_IGNORED)}
    target = model.state_dict()
    mapped: dict[str, Tensor] = {}
    resized: list[str] = []
    for key, value in source.items():
        mapped[key] = value
        if model.attention_type == "divided_space_time" and key.startswith("blocks."):
            if ".attn." in key:
                mapped[key.replace(".attn.", ".temporal_attn.")] = value
            elif ".norm1." in key:
                mapped[key.replace(".norm1.", ".temporal_norm1.")] = value
    if "cls_token" in mapped and model.cls_token is None:
        mapped.pop("cls_token")
        mapped["pos_embed"] = mapped["pos_embed"][:, 1:]
    if "pos_embed" in mapped and mapped["pos_embed"].shape != target["pos_embed"].shape:
        mapped["pos_embed"] = _resize_pos_embed(mapped["pos_embed"], target["pos_embed"], path)
        resized.append("pos_embed")
    skipped = [k for k in ("head.weight", "head.bias") if k in mapped and mapped[k].shape != target[k].shape]
    for key in skipped:
        mapped.pop(key)
    unknown = sorted(k for k in mapped if k not in target)
    bad = sorted(k for k in mapped if k in target and mapped[k].shape != target[k].shape)
    if unknown or bad:
        details = [f"keys the model lacks: {unknown[:8]}"] if unknown else []
        details += [f"{k}: file {tuple(mapped[k].shape)} vs model {tuple(target[k].shape)}" for k in bad[:8]]
        raise InputError(
            f"{path}: cannot load into {type(model).__name__} ({'; '.join(details)}); "
            "the checkpoint must be a timm ViT of the same width, depth and patch size, "
            "with the default attention"
        )
    missing = [k for k in target if k not in mapped]
    allowed = ("time_embed", "head.", ".temporal_fc.")
    not_allowed = [k for k in missing if not (k.startswith(allowed) or any(a in k for a in allowed))]
    if not_allowed:
        raise InputError(f"{path}: the checkpoint lacks {not_allowed[:8]} needed by {type(model).__name__}")
    model.load_state_dict(mapped, strict=False)
    report = {"loaded": sorted(mapped), "initialised": sorted(missing), "resized": resized}
    log.info(
        "loaded %d tensors from %s into %s; initialised %s; resized %s",
        len(mapped),
        path,
        type(model).__name__,
        report["initialised"],
        resized,
    )
    return report


def _resize_pos_embed(source: Tensor, target: Tensor, path: str | Path) -> Tensor:
    """Resize the patches of a ``(1, prefix + g², D)`` position embedding to the target's grid (nearest)."""
    prefix = target.shape[1] - round((target.shape[1]) ** 0.5) ** 2
    src_patches = source.shape[1] - prefix
    src_side, dst_side = round(src_patches**0.5), round((target.shape[1] - prefix) ** 0.5)
    if (
        src_side**2 != src_patches
        or dst_side**2 != target.shape[1] - prefix
        or source.shape[2] != target.shape[2]
    ):
        raise InputError(
            f"{path}: pos_embed {tuple(source.shape)} cannot be resized to {tuple(target.shape)} "
            "(square patch grids and equal widths are required)"
        )
    d = source.shape[2]
    grid = source[:, prefix:].transpose(1, 2).reshape(1, d, src_side, src_side)
    grid = F.interpolate(grid, size=(dst_side, dst_side), mode="nearest").flatten(2).transpose(1, 2)
    return torch.cat([source[:, :prefix], grid], dim=1)
