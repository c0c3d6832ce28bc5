"""Initialise a model from a checkpoint for fine-tuning, and say exactly what was used.

Rules: a tensor whose name and shape match is loaded; a name in ``resizable_keys`` whose shapes differ
only in the first dimension is linearly resized (e.g. a per-time-step table trained with another window
length); the convolutions that read the input (the model's first weight with a kernel, and any other
with the same change of input channels), when only that number differs, are adapted as timm's
``adapt_input_conv`` does (summed to one channel, or repeated and rescaled for more), so a network
pre-trained on 1-channel MRI starts on 4-channel BraTS; everything else is skipped with its reason.
Nothing is silently dropped: the report is logged, and a checkpoint that matches nothing is an error.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn

from core.training.sharding import consolidate_checkpoint, is_sharded_checkpoint

__all__ = ["LoadReport", "adapt_input_channels", "load_pretrained", "read_state_dict"]


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did with each tensor of the checkpoint."""

    loaded: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A multi-line human-readable report."""
        lines = [
            f"loaded {len(self.loaded)} tensors, resized {len(self.resized)}, adapted {len(self.adapted)}, "
            f"skipped {len(self.skipped)}, {len(self.missing)} model tensors not in the checkpoint "
            "(kept at initialisation)"
        ]
        lines += [f"  resized: {k}" for k in self.resized]
        lines += [f"  adapted: {k}" for k in self.adapted]
        lines += [f"  skipped: {k} ({why})" for k, why in self.skipped.items()]
        lines += [f"  missing: {k}" for k in self.missing]
        return "\n".join(lines)


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a ``state_dict`` from a Lightning checkpoint (file or sharded folder) or a ``state_dict``.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the file holds no tensors.
    """
    path = Path(path)
    if is_sharded_checkpoint(path):
        obj = consolidate_checkpoint(path)
    elif not path.is_file():
        raise FileNotFoundError(f"pretrained checkpoint not found: {path}")
    else:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not any(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a Lightning checkpoint or a state_dict of tensors")
    return {k: v for k, v in state.items() if isinstance(v, Tensor)}


def _differ_only_in(a: torch.Size, b: torch.Size, dim: int) -> bool:
    return a[:dim] == b[:dim] and a[dim + 1 :] == b[dim + 1 :] and a[dim] != b[dim]


def _resize_first_dim(tensor: Tensor, length: int) -> Tensor:
    moved = tensor.float().movedim(0, -1).reshape(1, -1, tensor.shape[0])
    out = F.interpolate(moved, size=length, mode="linear", align_corners=True)
    return out.reshape(*tensor.shape[1:], length).movedim(-1, 0).to(tensor.dtype)


def adapt_input_channels(weight: Tensor, channels: int) -> Tensor:
    """A convolution weight ``(out, in, *kernel)`` for ``channels`` inputs, as timm's ``adapt_input_conv``.

    One channel: the sum over the pre-trained inputs (a grey image is the sum of its colours). More: the
    pre-trained inputs repeated cyclically, then scaled by ``in / channels`` so that the response to an
    input that has the same value on every channel is unchanged.
    """
    old = weight.shape[1]
    if channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-channels // old)
    return weight.repeat(1, repeats, *([1] * (weight.ndim - 2)))[:, :channels] * (old / channels)


def _input_channels(source: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> tuple[int, int] | None:
    """``(checkpoint's, model's)`` input channels, read from the model's first weight with a kernel.

    None when they agree or the checkpoint lacks that weight. Every convolution that reads the input (the
    stem, and input pyramids such as AGUNet's) goes from the first number of channels to the second.
    """
    name = next((n for n, t in target.items() if n.endswith("weight") and t.ndim >= 3), None)
    if name is None or name not in source or source[name].ndim != target[name].ndim:
        return None
    pair = (source[name].shape[1], target[name].shape[1])
    return pair if pair[0] != pair[1] else None


def load_pretrained(model: nn.Module, path: str | Path, *, resizable_keys: Sequence[str] = ()) -> LoadReport:
    """Load matching weights from ``path`` into ``model`` and log what happened.

    Args:
        model: The module to initialise.
        path: Checkpoint path.
        resizable_keys: Substrings of tensor names that may be resized along their first dimension.

    Returns:
        The :class:`LoadReport`.

    Raises:
        ValueError: If no tensor of the checkpoint could be used.
    """
    source = read_state_dict(path)
    target = model.state_dict()
    report = LoadReport()
    channels = _input_channels(source, target)
    to_load: dict[str, Tensor] = {}
    for name, tensor in source.items():
        if name not in target:
            report.skipped[name] = "not in the model"
            continue
        want = target[name].shape
        if tensor.shape == want:
            to_load[name] = tensor
            report.loaded.append(name)
        elif (
            any(key in name for key in resizable_keys)
            and tensor.ndim == len(want)
            and tensor.shape[1:] == want[1:]
        ):
            to_load[name] = _resize_first_dim(tensor, want[0])
            report.resized.append(f"{name} {tuple(tensor.shape)} -> {tuple(want)}")
        elif (
            channels is not None
            and tensor.ndim == len(want) >= 3
            and (tensor.shape[1], want[1]) == channels
            and _differ_only_in(tensor.shape, want, dim=1)
        ):
            to_load[name] = adapt_input_channels(tensor, want[1]).to(tensor.dtype)
            report.adapted.append(f"{name} input channels {tensor.shape[1]} -> {want[1]} (timm's rule)")
        else:
            report.skipped[name] = f"shape {tuple(tensor.shape)} in checkpoint, {tuple(want)} in model"
    report.missing = [name for name in target if name not in to_load]
    if not to_load:
        raise ValueError(f"{path}: no tensor matches the model ({type(model).__name__}); wrong checkpoint?")
    model.load_state_dict(to_load, strict=False)
    rank_zero_info(f"pretrained weights from {path}: " + report.summary())
    if 2 * len(to_load) < len(target):
        # Other widths or depths load without error but leave most of the model at initialisation.
        rank_zero_warn(
            f"pretrained weights from {path}: only {len(to_load)} of the model's {len(target)} tensors "
            f"came from the checkpoint ({len(report.skipped)} of its tensors skipped); the run starts "
            "mostly from initialisation. Check that the network options (widths, depth) match the run "
            "that wrote it."
        )
    return report
