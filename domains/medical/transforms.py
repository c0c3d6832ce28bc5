"""MONAI preprocessing and augmentation pipelines for segmentation, plus the few transforms MONAI lacks.

:func:`build_pipeline` composes, per stage (``train``, ``eval`` = validation/test, ``predict``):

1. :class:`LoadImageFilesd` (MONAI ``LoadImaged`` with the NiBabel reader; a truncated or corrupt file raises
   :class:`ImageReadError` naming it, NaN or Inf voxels raise :class:`~core.utils.InputError` naming it, and
   an all-zero image file of a case whose label has foreground is warned about). Several files of one key
   are stacked as channels, in order.
2. ``EnsureChannelFirstd`` → ``Orientationd`` (``RAS`` by default) → ``Spacingd`` (optional ``pixdim``,
   bilinear for the image, nearest for the label).
3. :class:`MapLabelsd`: ``binary`` (label > 0 → 1), an explicit ``{raw value: class}`` dict, or None (labels
   used as they are, which must lie in ``[0, num_classes)``); unexpected values raise
   :class:`~core.utils.InputError` naming the label file.
4. ``CropForegroundd`` on the bounding box of the voxels above each channel's minimum (optional). This runs
   *before* normalisation: raw MRI backgrounds are 0, pre-normalised sets (BraTS ``*_subtrMeanDivStd``) have
   a constant negative background, both of which are the volume's minimum.
5. Intensity normalisation: ``zscore`` (per channel, over the non-zero voxels), ``range`` (``a_min``/``a_max``
   → [0, 1], clipped), ``percentile`` (the given percentiles → [0, 1], clipped, per channel) or ``none``.
6. ``train`` only: ``SpatialPadd`` to the patch, :class:`PosNegCropd` (``RandCropByPosNegLabeld`` that falls
   back to random crops on volumes without foreground), 2-D mode: squeeze the ``(H, W, 1)`` patches to
   ``(H, W)``; the augmentation preset (:func:`augmentations`: ``none``, ``light`` = flips per axis and
   intensity scale/shift, ``nnunet`` = nnU-Net's spatial and intensity set); plain float32 tensors.
   ``eval``: :class:`VoxelVolumed` adds ``voxel_ml``; the tensors stay MetaTensors.

Every deterministic transform precedes the first random one, so MONAI's ``CacheDataset`` and
``PersistentDataset`` cache everything up to the crop.
"""

import logging
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from core.utils import InputError, require
from domains.medical.cases import LabelMap, check_label_map

require("monai", "medical")

from monai.data import MetaTensor  # noqa: E402
from monai.transforms import (  # noqa: E402
    Compose,
    CropForegroundd,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    NormalizeIntensityd,
    Orientationd,
    Rand2DElasticd,
    Rand3DElasticd,
    RandAdjustContrastd,
    RandAffined,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    Randomizable,
    RandScaleIntensityd,
    RandScaleIntensityFixedMeand,
    RandShiftIntensityd,
    RandSimulateLowResolutiond,
    RandSpatialCropSamplesd,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentilesd,
    Spacingd,
    SpatialPadd,
    SqueezeDimd,
)
from monai.transforms.traits import MultiSampleTrait  # noqa: E402

__all__ = [
    "Augmentation",
    "ImageReadError",
    "LoadImageFilesd",
    "MapLabelsd",
    "Normalize",
    "PipelineConfig",
    "PosNegCropd",
    "VoxelVolumed",
    "above_minimum",
    "affine_spacing",
    "augmentations",
    "build_pipeline",
    "voxel_volume_ml",
]

logger = logging.getLogger(__name__)

Normalize = Literal["zscore", "range", "percentile", "none"]
Augmentation = Literal["none", "light", "nnunet"]
Stage = Literal["train", "eval", "predict"]
RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))  # NIfTI world axes: codes mean the direction of increase


def _source(value: Any) -> str:
    """The file a MetaTensor was read from (for error messages)."""
    meta = getattr(value, "meta", None) or {}
    name = meta.get("filename_or_obj")
    return str(name) if name else "<unknown file>"


# ---------------------------------------------------------------------------------------------- loading


class ImageReadError(InputError, OSError):
    """A NIfTI file could not be decoded (truncated download, corrupt gzip stream, bad header)."""


class LoadImageFilesd(MapTransform):
    """``LoadImaged`` (NiBabel reader, float32, MetaTensors) that checks the voxels and names a bad file.

    A list of files under one key is stacked as channels in order (MONAI's multi-file loading). Checks, at
    load time (before any voxel reaches a loss): a file that does not decode raises :class:`ImageReadError`;
    NaN or Inf voxels raise :class:`~core.utils.InputError` (they would turn the loss NaN a few steps later,
    far from the file); an image file whose voxels are all zero while the case's label has foreground is
    logged as a warning (an export that lost the scan), once per case and process.

    Args:
        keys: Keys holding a path or a list of paths.
        allow_missing_keys: Skip absent keys (predict items have no label).
        image_key: The image key (for the all-zero check).
        label_key: The label key (for the all-zero check).
    """

    def __init__(
        self,
        keys: Any,
        allow_missing_keys: bool = False,
        image_key: str = "image",
        label_key: str = "label",
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key
        self.label_key = label_key
        self.loader = LoadImaged(
            keys,
            reader="NibabelReader",
            dtype=np.float32,
            image_only=True,
            allow_missing_keys=allow_missing_keys,
        )
        self.warned: set[str] = set()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Load every key; on failure find the file that does not decode and name it; check the voxels."""
        try:
            loaded = self.loader(data)
        except Exception as err:
            case = data.get("case", "?")
            for key in self.key_iterator(dict(data)):
                for path in _paths(data[key]):
                    problem = _decode_problem(path)
                    if problem is not None:
                        raise ImageReadError(
                            f"cannot read {path} (case {case}, key {key!r}): {problem}; the file is "
                            "truncated or corrupt: copy or export it again"
                        ) from err
            raise ImageReadError(f"cannot load the {list(self.keys)} files of case {case}: {err}") from err
        self.check_voxels(data, loaded)
        return loaded

    def check_voxels(self, files: Mapping[Hashable, Any], loaded: Mapping[Hashable, Any]) -> None:
        """Refuse non-finite voxels and warn about an all-zero image with a labelled foreground.

        Args:
            files: The item before loading (paths per key).
            loaded: The item after loading (tensors per key).

        Raises:
            InputError: If a file holds NaN or Inf voxels (names the case, the file and the count).
        """
        case = str(files.get("case", "?"))
        for key in self.key_iterator(dict(loaded)):
            finite = torch.isfinite(_plain(loaded[key]))
            if bool(finite.all()):
                continue
            paths = _paths(files[key])
            bad = [p for p in paths if _has_nonfinite(p)] if len(paths) > 1 else paths
            raise InputError(
                f"case {case}: {', '.join(bad or paths)} ({key}) holds {int((~finite).sum())} NaN or Inf "
                "voxels; every voxel must be a finite number: re-export the file or leave the case out"
            )
        if self.image_key not in loaded or self.label_key not in loaded or case in self.warned:
            return
        image, label = _plain(loaded[self.image_key]), _plain(loaded[self.label_key])
        paths = _paths(files[self.image_key])
        if len(paths) == 1:
            zero = [] if bool(image.any()) else paths
        else:
            channel_dim = getattr(loaded[self.image_key], "meta", {}).get("original_channel_dim", 0)
            channels = image.movedim(int(channel_dim), 0) if isinstance(channel_dim, int) else image[None]
            blank_channel = not bool(channels.reshape(channels.shape[0], -1).any(dim=1).all())
            zero = [p for p in paths if _all_zero(p)] if blank_channel else []
        if zero and bool((label > 0).any()):
            self.warned.add(case)
            logger.warning(
                "case %s: every voxel of %s is 0, but its label %s has %d foreground voxels; the image is "
                "probably a broken export (the case still trains)",
                case,
                ", ".join(zero),
                _paths(files[self.label_key])[0],
                int((label > 0).sum()),
            )


def _paths(value: Any) -> list[str]:
    """The file paths of one key of an item (a path or a list of paths)."""
    return [str(p) for p in value] if isinstance(value, list | tuple) else [str(value)]


def _decode_problem(path: str) -> str | None:
    """Why ``path`` cannot be fully decoded by nibabel, or None if it can."""
    import nibabel as nib

    try:
        np.asarray(nib.load(path).dataobj)
    except Exception as err:  # EOFError, zlib.error, OSError, nibabel's ImageFileError ...
        return f"{type(err).__name__}: {err}"
    return None


def _plain(value: Any) -> torch.Tensor:
    """A loaded volume as a plain tensor (no MetaTensor bookkeeping for the checks)."""
    return value.as_tensor() if isinstance(value, MetaTensor) else torch.as_tensor(value)


def _has_nonfinite(path: str) -> bool:
    """Whether ``path`` holds NaN or Inf voxels (read again, only once a stack of files has some)."""
    import nibabel as nib

    return not np.isfinite(np.asarray(nib.load(path).dataobj, dtype=np.float32)).all()


def _all_zero(path: str) -> bool:
    """Whether every voxel of ``path`` is 0 (read again, only once a stack of files has a blank channel)."""
    import nibabel as nib

    return not np.asarray(nib.load(path).dataobj).any()


# ------------------------------------------------------------------------------------------- label maps


class MapLabelsd(MapTransform):
    """Map raw label values to class indices and reject values the mapping does not know.

    Args:
        keys: Label keys.
        label_map: ``binary`` (every value > 0 → 1), ``{raw: class}`` (0 → 0 implied), or None (identity).
        num_classes: Classes including background; with ``label_map=None`` values must be in
            ``[0, num_classes)``.
        allow_missing_keys: Skip absent keys.
    """

    def __init__(
        self, keys: Any, label_map: LabelMap, num_classes: int, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.label_map = check_label_map(label_map)
        self.num_classes = num_classes

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Map every label key; raise :class:`~core.utils.InputError` naming the file on unexpected values."""
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.map(d[key])
        return d

    def map(self, label: torch.Tensor) -> torch.Tensor:
        """The mapped label (a MetaTensor keeps its metadata)."""
        array = label.as_tensor() if isinstance(label, MetaTensor) else torch.as_tensor(label)
        values = torch.unique(array)
        fractional = values[values != torch.round(values)]
        if len(fractional):
            raise InputError(
                f"label file {_source(label)} holds non-integer values {fractional[:8].tolist()}"
                "; a label map must hold class indices (resampled with nearest-neighbour interpolation)"
            )
        if self.label_map == "binary":
            allowed, expected = values >= 0, "values >= 0 (binary: > 0 → 1)"
            mapped = (array > 0).to(array.dtype)
        elif isinstance(self.label_map, dict):
            keys = torch.tensor(sorted(self.label_map), dtype=values.dtype)
            allowed, expected = torch.isin(values, keys), f"the label_map keys {sorted(self.label_map)}"
            mapped = torch.zeros_like(array)
            for raw, cls in self.label_map.items():
                if cls:
                    mapped[array == raw] = cls
        else:
            allowed = (values >= 0) & (values < self.num_classes)
            expected, mapped = f"values in [0, {self.num_classes}) (num_classes={self.num_classes})", array
        if not bool(allowed.all()):
            bad = [int(v) if float(v).is_integer() else float(v) for v in values[~allowed].tolist()]
            raise InputError(
                f"label file {_source(label)} holds unexpected label values {bad}; expected {expected}. "
                "Set label_map (e.g. 'binary' or {raw value: class}) or num_classes to match the data"
            )
        if isinstance(label, MetaTensor):
            return MetaTensor(mapped, meta=label.meta, applied_operations=label.applied_operations)
        return mapped


# ---------------------------------------------------------------------------------------------- cropping


def above_minimum(image: torch.Tensor) -> torch.Tensor:
    """Foreground for ``CropForegroundd``: voxels above their channel's minimum (all voxels if constant)."""
    flat = image.reshape(image.shape[0], -1)
    mask = image > flat.min(dim=1).values.reshape(-1, *([1] * (image.ndim - 1)))
    return mask if bool(mask.any()) else torch.ones_like(mask)


class PosNegCropd(Randomizable, MapTransform, MultiSampleTrait):
    """``RandCropByPosNegLabeld`` that falls back to random crops on a volume without foreground.

    ``RandCropByPosNegLabeld`` centres ``pos / (pos + neg)`` of its patches on foreground voxels; a volume
    whose label is all background (a healthy case, or a crop that removed it) would make it warn on every
    call or fail. Such volumes get ``RandSpatialCropSamplesd`` patches instead and one warning naming the case
    (once per case and process).

    Args:
        keys: Keys to crop (image and label).
        label_key: The label key.
        spatial_size: Patch size (``(H, W, 1)`` for 2-D slices).
        pos: Weight of foreground-centred patches.
        neg: Weight of background-centred patches.
        num_samples: Patches per volume.
        case_key: Key holding the case id (for the warning).
    """

    def __init__(
        self,
        keys: Any,
        label_key: str,
        spatial_size: list[int],
        pos: float = 1.0,
        neg: float = 1.0,
        num_samples: int = 1,
        case_key: str = "case",
    ) -> None:
        MapTransform.__init__(self, keys)
        self.label_key = label_key
        self.case_key = case_key
        self.pos = pos
        self.balanced = RandCropByPosNegLabeld(keys, label_key, spatial_size, pos, neg, num_samples)
        self.fallback = RandSpatialCropSamplesd(keys, spatial_size, num_samples, random_size=False)
        self.warned: set[str] = set()

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> "PosNegCropd":
        """Seed this transform and both croppers."""
        super().set_random_state(seed, state)
        self.balanced.set_random_state(seed, state)
        self.fallback.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        """Randomness lives in the wrapped croppers."""

    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]]:
        """``num_samples`` patch dicts."""
        label = data[self.label_key]
        if self.pos > 0 and not bool((label > 0).any()):
            case = str(data.get(self.case_key, _source(label)))
            if case not in self.warned:
                self.warned.add(case)
                logger.warning(
                    "case %s has no foreground voxel in its (preprocessed) label; its training patches are "
                    "random crops instead of foreground-centred ones",
                    case,
                )
            return self.fallback(data)
        return self.balanced(data)


# ------------------------------------------------------------------------------------------ voxel volume


def affine_spacing(affine: torch.Tensor | np.ndarray, dims: int = 3) -> torch.Tensor:
    """Voxel sizes in mm, ``(..., dims)``: the column norms of the affine's linear part (any rotation).

    Args:
        affine: ``(4, 4)`` or batched ``(..., 4, 4)`` affine.
        dims: Spatial axes to read.
    """
    linear = torch.as_tensor(affine, dtype=torch.float64)[..., :dims, :dims]
    return linear.norm(dim=-2)


def voxel_volume_ml(affine: torch.Tensor | np.ndarray) -> float:
    """Volume of one voxel in ml: product of the voxel sizes (mm) / 1000."""
    return float(affine_spacing(affine).prod()) / 1000.0


class VoxelVolumed(MapTransform):
    """Add ``voxel_ml``: the voxel volume (ml, float64 scalar tensor) of ``keys`` from its current affine.

    Args:
        keys: The reference key (a MetaTensor, normally the image).
        output_key: Where to store the volume.
    """

    def __init__(self, keys: Any, output_key: str = "voxel_ml") -> None:
        super().__init__(keys)
        self.output_key = output_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """The item with ``voxel_ml`` added."""
        d = dict(data)
        key = self.first_key(d)
        d[self.output_key] = torch.tensor(voxel_volume_ml(d[key].affine), dtype=torch.float64)
        return d


# ---------------------------------------------------------------------------------------------- pipeline


@dataclass(frozen=True)
class PipelineConfig:
    """Preprocessing and augmentation settings (see :class:`domains.medical.datamodule.MedicalDataModule`).

    Attributes:
        num_classes: Classes including background.
        label_map: See :class:`MapLabelsd`.
        spatial_dims: 3 (patches) or 2 (``(H, W)`` slices of the last spatial axis).
        patch_size: Training patch, length ``spatial_dims``.
        samples_per_volume: Patches cut per volume and epoch.
        pos: Foreground-centred patch weight.
        neg: Background-centred patch weight.
        orientation: Axis codes for ``Orientationd`` or None to keep the file's.
        pixdim: Target voxel size in mm, or None to keep the file's.
        normalize: ``zscore``, ``range``, ``percentile`` or ``none``.
        intensity_range: ``(a_min, a_max)`` for ``range``.
        percentiles: ``(lower, upper)`` for ``percentile``.
        crop_foreground: Crop to the foreground bounding box.
        crop_margin: Voxels kept around it.
        flip_prob: Probability of a flip, per spatial axis.
        scale_prob: Probability of ``RandScaleIntensityd``.
        shift_prob: Probability of ``RandShiftIntensityd``.
        scale_factor: Scale ``v * (1 + U(-f, f))``.
        shift_offset: Shift ``v + U(-o, o)``.
        augmentation: Preset of random training transforms (:func:`augmentations`).
        mask: Evaluation and predict items carry a ``mask`` file (loaded, reoriented, resampled nearest and
            cropped with the image; not used in training).
    """

    num_classes: int
    label_map: LabelMap = None
    spatial_dims: int = 3
    patch_size: tuple[int, ...] = (32, 32, 32)
    samples_per_volume: int = 2
    pos: float = 1.0
    neg: float = 1.0
    orientation: str | None = "RAS"
    pixdim: tuple[float, ...] | None = None
    normalize: Normalize = "zscore"
    intensity_range: tuple[float, float] | None = None
    percentiles: tuple[float, float] = (0.5, 99.5)
    crop_foreground: bool = True
    crop_margin: int = 0
    flip_prob: float = 0.5
    scale_prob: float = 0.5
    shift_prob: float = 0.5
    scale_factor: float = 0.1
    shift_offset: float = 0.1
    augmentation: Augmentation = "light"
    mask: bool = False

    @property
    def crop_size(self) -> list[int]:
        """The 3-D crop: the patch, or ``(H, W, 1)`` in 2-D mode."""
        return [*self.patch_size, 1] if self.spatial_dims == 2 else list(self.patch_size)


def _normalisation(config: PipelineConfig) -> list[Any]:
    if config.normalize == "zscore":
        return [NormalizeIntensityd("image", nonzero=True, channel_wise=True)]
    if config.normalize == "range":
        if config.intensity_range is None:
            raise ValueError("normalize='range' needs intensity_range=(a_min, a_max)")
        a_min, a_max = config.intensity_range
        return [ScaleIntensityRanged("image", a_min=a_min, a_max=a_max, b_min=0.0, b_max=1.0, clip=True)]
    if config.normalize == "percentile":
        lower, upper = config.percentiles
        return [
            ScaleIntensityRangePercentilesd(
                "image", lower=lower, upper=upper, b_min=0.0, b_max=1.0, clip=True, channel_wise=True
            )
        ]
    if config.normalize == "none":
        return []
    raise ValueError(f"normalize must be zscore, range, percentile or none, got {config.normalize!r}")


def augmentations(config: PipelineConfig) -> list[Any]:
    """The random training transforms of ``config.augmentation``, applied to each ``image``/``label`` patch.

    * ``none``: nothing (crops only).
    * ``light``: a flip per spatial axis (``flip_prob``), ``RandScaleIntensityd`` and ``RandShiftIntensityd``
      (``intensity_scale*`` / ``intensity_shift*``).
    * ``nnunet``: the set of nnU-Net's default trainer (Isensee et al. 2021), with its probabilities:
      rotation (±30° per axis) and scaling (0.7–1.4) in one ``RandAffined`` (p 0.2), elastic deformation
      (p 0.1; nnU-Net v2 turns it off, the issue asks for it), Gaussian noise (variance ≤ 0.1, p 0.1),
      Gaussian blur (σ 0.5–1, p 0.2), brightness (×0.75–1.25, p 0.15), contrast around the mean
      (×0.75–1.25, p 0.15), simulated low resolution (zoom 0.5–1, p 0.25), gamma (0.7–1.5, p 0.3) and a flip
      per axis (``flip_prob``). The label follows spatial transforms with nearest interpolation.

    Spatial transforms act on the cropped patch, filling what rotates in with zeros (nnU-Net crops a larger
    patch first; at 64³ the corners this affects are a small share of the patch).
    """
    keys = ["image", "label"]
    dims = config.spatial_dims
    if config.augmentation == "none":
        return []
    flips = [RandFlipd(keys, prob=config.flip_prob, spatial_axis=axis) for axis in range(dims)]
    if config.augmentation == "light":
        return [
            *flips,
            RandScaleIntensityd("image", factors=config.scale_factor, prob=config.scale_prob),
            RandShiftIntensityd("image", offsets=config.shift_offset, prob=config.shift_prob),
        ]
    if config.augmentation != "nnunet":
        raise InputError(f"augmentation must be none, light or nnunet, got {config.augmentation!r}")
    angle = np.pi / 6
    modes = ["bilinear", "nearest"]
    elastic: Any
    if dims == 3:
        elastic = Rand3DElasticd(
            keys, sigma_range=(9, 13), magnitude_range=(0, 200), prob=0.1, mode=modes, padding_mode="zeros"
        )
    else:
        elastic = Rand2DElasticd(
            keys, spacing=(16, 16), magnitude_range=(0, 2), prob=0.1, mode=modes, padding_mode="zeros"
        )
    return [
        RandAffined(
            keys,
            prob=0.2,
            rotate_range=(angle,) * (3 if dims == 3 else 1),
            scale_range=(0.3,) * dims,
            mode=modes,
            padding_mode="zeros",
        ),
        elastic,
        RandGaussianNoised("image", prob=0.1, std=float(np.sqrt(0.1))),
        RandGaussianSmoothd("image", sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0), prob=0.2),
        RandScaleIntensityd("image", factors=0.25, prob=0.15),
        RandScaleIntensityFixedMeand("image", factors=0.25, preserve_range=True, prob=0.15),
        RandSimulateLowResolutiond(
            "image", prob=0.25, zoom_range=(0.5, 1.0), upsample_mode="trilinear" if dims == 3 else "bilinear"
        ),
        RandAdjustContrastd("image", gamma=(0.7, 1.5), prob=0.3),
        *flips,
    ]


def build_pipeline(config: PipelineConfig, stage: Stage) -> Compose:
    """The MONAI ``Compose`` of a stage.

    Args:
        config: Preprocessing and augmentation settings.
        stage: ``train`` (patches, augmentation, plain tensors), ``eval`` (whole volumes with label and
            ``voxel_ml``, MetaTensors) or ``predict`` (whole images only, MetaTensors whose
            ``applied_operations`` let ``Invertd`` map predictions back to the original space).

    Returns:
        The pipeline; items are ``{"case", "image", "label"}`` dicts of file paths (no ``label`` in predict).
    """
    keys = ["image"] if stage == "predict" else ["image", "label"]
    modes = ["bilinear"] if stage == "predict" else ["bilinear", "nearest"]
    if config.mask and stage != "train":
        keys, modes = [*keys, "mask"], [*modes, "nearest"]
    xforms: list[Any] = [LoadImageFilesd(keys), EnsureChannelFirstd(keys)]
    if config.orientation:
        xforms.append(Orientationd(keys, axcodes=config.orientation, labels=RAS_LABELS))
    if config.pixdim is not None:
        xforms.append(Spacingd(keys, pixdim=list(config.pixdim), mode=modes))
    if stage != "predict":
        xforms.append(MapLabelsd("label", config.label_map, config.num_classes))
    if config.crop_foreground:
        xforms.append(
            CropForegroundd(
                keys,
                "image",
                select_fn=above_minimum,
                margin=config.crop_margin,
                allow_smaller=True,
                start_coord_key=None,
                end_coord_key=None,
            )
        )
    xforms += _normalisation(config)
    if stage == "train":
        crop = config.crop_size
        xforms += [
            SpatialPadd(keys, spatial_size=crop),
            PosNegCropd(keys, "label", crop, config.pos, config.neg, config.samples_per_volume),
        ]
        if config.spatial_dims == 2:
            xforms.append(SqueezeDimd(keys, dim=3, update_meta=False))
        xforms += augmentations(config)
        xforms.append(EnsureTyped(keys, dtype=torch.float32, track_meta=False))
    else:
        if stage == "eval":
            xforms.append(VoxelVolumed("image"))
        xforms.append(EnsureTyped(keys, dtype=torch.float32))
    return Compose(xforms)
