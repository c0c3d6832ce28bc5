"""The base of the medical segmentation datamodules, for 3-D (and slice-wise 2-D) MONAI pipelines.

The datamodules of the data layouts (:mod:`domains.medical.layouts`: :class:`DecathlonDataModule`,
:class:`CaseFolderDataModule`) share :class:`MedicalDataModule` (on :class:`~core.data.BaseDataModule`):
case discovery and upfront checks (:mod:`domains.medical.cases`), splits (:mod:`domains.medical.splits`),
MONAI pipelines (:mod:`domains.medical.transforms`), optional caching (:mod:`domains.medical.caching`) and
the batch contracts of the segmentation task:

* train: ``{"image": (B, C, *patch) float32, "label": (B, 1, *patch) float32 class indices, "case": [...]}``
  with ``B = batch_size * samples_per_volume`` patches; 2-D mode cuts ``(H, W)`` slices of the last axis.
* val / test (one whole preprocessed volume, 3-D even in 2-D mode): ``{"image": (1, C, H, W, D) MetaTensor,
  "label": (1, 1, H, W, D) MetaTensor, "case": [id], "voxel_ml": (1,) float64}``, plus ``"mask"``
  ``(1, 1, H, W, D)`` when the layout has a per-case mask (``CaseFolderDataModule(mask=...)``).
* predict: ``{"image": (1, C, H, W, D) MetaTensor with applied_operations, "case": [id]}`` (and ``"mask"``);
  :attr:`MedicalDataModule.predict_transform` is the Compose to give ``Invertd``.
"""

import tempfile
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

from lightning.pytorch.utilities import rank_zero_info
from monai.data import DataLoader
from torch.utils.data import Dataset

from core.data import BaseDataModule, Split
from core.utils import InputError
from domains.medical.caching import CacheMode, cache_folder, case_dataset, reseed_transforms
from domains.medical.cases import (
    AFFINE_ATOL,
    Case,
    LabelMap,
    check_headers,
    check_label_map,
    label_map_num_classes,
)
from domains.medical.splits import SplitKind, check_split_options, split_cases

__all__ = ["RESOLVED", "MedicalDataModule"]

DEFAULT_PATCH = {3: [32, 32, 32], 2: [64, 64]}
RESOLVED = ["num_classes", "class_names", "patch_size"]
"""Init arguments a datamodule resolves (``None`` → a value from the data or a default): left out of its saved
hyper-parameters, since the task's hold the resolved values under the same names."""


class MedicalDataModule(BaseDataModule):
    """Base of the segmentation datamodules: options, splits, pipelines, caching and loader options.

    Subclasses provide :meth:`_discover` (the labelled cases), :meth:`_discover_predict` (the cases of their
    prediction inputs, None without any), :meth:`_input_folders` and call :meth:`_finish_init` with
    ``in_channels`` and the dataset's class names. The sizes the task needs (:attr:`links`) are attributes
    right after ``__init__``; images are read only in ``setup`` (every process builds its own datasets, so it
    is DDP-safe).

    Args:
        num_classes: Classes including background. Default: from ``label_map`` (``binary`` → 2, a dict →
            its largest class + 1) or the dataset's class names; an explicit value that disagrees is an error.
        label_map: ``binary`` (every label > 0 → 1, e.g. BraTS whole tumour), an explicit
            ``{raw value: class}`` dict (raw 0 → 0 implied), or None (label values used as they are and
            checked to lie in ``[0, num_classes)``).
        class_names: Names of the classes (background first). Default: from the dataset where possible.
        spatial_dims: 3 (3-D patches) or 2 (``(H, W)`` slices along the last spatial axis after
            ``orientation``, i.e. axial for RAS; validation/test stay 3-D volumes).
        patch_size: Training patch (length ``spatial_dims``) and the task's default sliding-window ROI.
            Default: ``[32, 32, 32]`` (3-D) or ``[64, 64]`` (2-D). Volumes smaller than it are zero-padded.
        samples_per_volume: Patches cut from each volume per epoch (``RandCropByPosNegLabeld`` num_samples).
        pos: Weight of patches centred on foreground.
        neg: Weight of patches centred on background (``pos / (pos + neg)`` are foreground-centred).
        foreground_oversampling: Share of patches centred on foreground, in ``[0, 1]`` (nnU-Net: 0.33, the
            rest random); replaces ``pos`` / ``neg`` when given.
        batch_size: Volumes per training batch (a batch holds ``batch_size * samples_per_volume`` patches).
            Validation, test and predict always use 1 whole volume per batch.
        num_workers: DataLoader worker processes (0 loads in the main process).
        pixdim: Resample to this voxel size (mm, one per axis); default: keep the files' spacing.
        orientation: ``Orientationd`` axis codes (default ``RAS``); None keeps the files' orientation.
        normalize: ``zscore`` (per channel over non-zero voxels), ``range`` (``intensity_range`` → [0, 1]),
            ``percentile`` (``percentiles`` → [0, 1], per channel) or ``none`` (already normalised data).
        intensity_range: ``(a_min, a_max)`` for ``normalize='range'`` (e.g. CT windows).
        percentiles: ``(lower, upper)`` for ``normalize='percentile'``.
        crop_foreground: Crop each volume to the bounding box of its voxels above the channel minimum
            (raw background 0, or the constant background of pre-normalised data).
        crop_margin: Voxels kept around that box.
        augmentation: Training augmentation preset: ``none``, ``light`` (flips and intensity scale/shift, the
            options below) or ``nnunet`` (rotation, scaling, elastic, flips, gamma, noise, blur, brightness,
            contrast, simulated low resolution; :func:`domains.medical.transforms.augmentations`).
        flip_prob: Probability of a random flip, per spatial axis (training).
        intensity_scale_prob: Probability of ``RandScaleIntensityd`` (training).
        intensity_shift_prob: Probability of ``RandShiftIntensityd`` (training).
        intensity_scale: Scale factor range ``v * (1 + U(-s, s))``.
        intensity_shift: Offset range ``v + U(-o, o)`` (in normalised units).
        cache: ``none``, ``memory`` (MONAI ``CacheDataset``: every deterministic step, loading included, done
            once in ``setup``) or ``disk`` (``PersistentDataset`` files under ``cache_dir``).
        cache_dir: Folder of the disk cache; default ``<system temp>/attnlab/medical_cache``. A subfolder per
            preprocessing configuration is used. It may not lie inside an input folder.
        split: ``ratio`` (``val_fraction`` / ``test_fraction`` with ``seed``), ``kfold`` (``num_folds``,
            ``fold``, ``seed``; fold ``fold`` is the test set, the next fold (``val_offset``) validation, so
            checkpoints are never chosen on test patients) or ``fixed`` (``val_cases`` /
            ``test_cases`` ids, every other case trains).
        val_fraction: Validation share for ``ratio``.
        test_fraction: Test share for ``ratio``.
        num_folds: Folds for ``kfold``.
        fold: Test fold for ``kfold`` (``0 .. num_folds - 1``; each case is tested by exactly one fold).
        val_offset: Validation fold of ``kfold``: ``(fold + val_offset) % num_folds``. Training one test
            fold with offsets ``1 .. num_folds - 1`` gives models that never saw its cases, whose ensemble
            (``--model.ensemble``) can be tested on them: nested cross-validation.
        seed: Split seed.
        val_cases: Validation case ids for ``fixed``.
        test_cases: Test case ids for ``fixed``.
        predict_root: Images to predict (no labels needed); default: the test split's images.
        affine_atol: Tolerance (mm) of the affine comparison between modalities and label.
    """

    links: ClassVar[dict[str, str]] = {
        "in_channels": "in_channels",
        "num_classes": "num_classes",
        "spatial_dims": "spatial_dims",
        "patch_size": "patch_size",
        "class_names": "class_names",
    }
    sample_name: ClassVar[str] = "cases"
    # MONAI's DataLoader seeds the random transforms of a dataset loaded in the main process (a plain one
    # would leave them unseeded), and defaults to its collate and worker seeding.
    loader_class: ClassVar[type[DataLoader]] = DataLoader
    # The crops and flips keep a random state of their own: seeded per sample, a resumed run draws alike.
    sample_reseed = reseed_transforms

    def __init__(
        self,
        num_classes: int | None = None,
        label_map: LabelMap = None,
        class_names: list[str] | None = None,
        spatial_dims: Literal[2, 3] = 3,
        patch_size: list[int] | None = None,
        samples_per_volume: int = 2,
        pos: float = 1.0,
        neg: float = 1.0,
        foreground_oversampling: float | None = None,
        batch_size: int = 2,
        num_workers: int = 0,
        pixdim: list[float] | None = None,
        orientation: str | None = "RAS",
        normalize: Literal["zscore", "range", "percentile", "none"] = "zscore",
        intensity_range: tuple[float, float] | None = None,
        percentiles: tuple[float, float] = (0.5, 99.5),
        crop_foreground: bool = True,
        crop_margin: int = 0,
        augmentation: Literal["none", "light", "nnunet"] = "light",
        flip_prob: float = 0.5,
        intensity_scale_prob: float = 0.5,
        intensity_shift_prob: float = 0.5,
        intensity_scale: float = 0.1,
        intensity_shift: float = 0.1,
        cache: CacheMode = "none",
        cache_dir: str | None = None,
        split: SplitKind = "ratio",
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        num_folds: int = 5,
        fold: int = 0,
        val_offset: int = 1,
        seed: int = 0,
        val_cases: list[str] | None = None,
        test_cases: list[str] | None = None,
        predict_root: str | None = None,
        affine_atol: float = AFFINE_ATOL,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=1, num_workers=num_workers, pin_memory=False)
        if spatial_dims not in (2, 3):
            raise InputError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        patch = list(DEFAULT_PATCH[spatial_dims] if patch_size is None else patch_size)
        if len(patch) != spatial_dims or any(int(p) < 1 for p in patch):
            raise InputError(
                f"patch_size must hold {spatial_dims} positive sizes (spatial_dims), got {patch_size}"
            )
        if samples_per_volume < 1:
            raise InputError(f"samples_per_volume must be >= 1, got {samples_per_volume}")
        if foreground_oversampling is not None:
            if not 0 <= foreground_oversampling <= 1:
                raise InputError(
                    f"foreground_oversampling must be a share in [0, 1], got {foreground_oversampling}"
                )
            pos, neg = float(foreground_oversampling), 1.0 - float(foreground_oversampling)
        if augmentation not in ("none", "light", "nnunet"):
            raise InputError(f"augmentation must be none, light or nnunet, got {augmentation!r}")
        if pos < 0 or neg < 0 or pos + neg <= 0:
            raise InputError(f"pos ({pos}) and neg ({neg}) must be >= 0 with a positive sum")
        if pixdim is not None and (len(pixdim) != 3 or any(p <= 0 for p in pixdim)):
            raise InputError(f"pixdim must hold 3 positive voxel sizes in mm, got {pixdim}")
        if normalize not in ("zscore", "range", "percentile", "none"):
            raise InputError(f"normalize must be zscore, range, percentile or none, got {normalize!r}")
        if normalize == "range" and (intensity_range is None or len(intensity_range) != 2):
            raise InputError("normalize='range' needs intensity_range=[a_min, a_max]")
        probabilities = {
            "flip_prob": flip_prob,
            "intensity_scale_prob": intensity_scale_prob,
            "intensity_shift_prob": intensity_shift_prob,
        }
        for name, p in probabilities.items():
            if not 0 <= p <= 1:
                raise InputError(f"{name} must be a probability in [0, 1], got {p}")
        if cache not in ("none", "memory", "disk"):
            raise InputError(f"cache must be none, memory or disk, got {cache!r}")
        self.label_map = check_label_map(label_map)
        self.spatial_dims: Literal[2, 3] = spatial_dims
        self.patch_size: list[int] = [int(p) for p in patch]
        self.slice_axis = 2  # 2-D mode: slices of the last spatial axis (pick another one with `orientation`)
        self.samples_per_volume = samples_per_volume
        self.cache = cache
        self.cache_dir = (
            Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "attnlab" / "medical_cache"
        )
        self.split_options: dict[str, Any] = {
            "split": split,
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
            "num_folds": num_folds,
            "fold": fold,
            "val_offset": val_offset,
            "seed": seed,
            "val_cases": list(val_cases) if val_cases is not None else None,
            "test_cases": list(test_cases) if test_cases is not None else None,
        }
        check_split_options(self.split_options)
        self.predict_root = Path(predict_root) if predict_root else None
        self.affine_atol = affine_atol
        self._requested = {"num_classes": num_classes, "class_names": class_names}
        self._preprocess = {
            "samples_per_volume": samples_per_volume,
            "pos": pos,
            "neg": neg,
            "orientation": orientation,
            "pixdim": tuple(float(p) for p in pixdim) if pixdim is not None else None,
            "normalize": normalize,
            "intensity_range": tuple(float(v) for v in intensity_range)
            if intensity_range is not None
            else None,
            "percentiles": tuple(float(v) for v in percentiles),
            "crop_foreground": crop_foreground,
            "crop_margin": crop_margin,
            "flip_prob": flip_prob,
            "scale_prob": intensity_scale_prob,
            "shift_prob": intensity_shift_prob,
            "scale_factor": intensity_scale,
            "shift_offset": intensity_shift,
            "augmentation": augmentation,
        }
        self.cases: list[Case] | None = None
        self.splits: dict[str, list[Case]] = {}

    def _finish_init(self, in_channels: int, dataset_labels: dict[int, str]) -> None:
        """Resolve ``in_channels``, ``num_classes`` and ``class_names``; build the pipelines.

        Args:
            in_channels: Channels per case (modalities).
            dataset_labels: Class names by raw label value from the dataset description (may be empty).
        """
        from domains.medical.transforms import PipelineConfig, build_pipeline

        self.in_channels = int(in_channels)
        requested = self._requested["num_classes"]
        derived = label_map_num_classes(self.label_map)
        if derived is None and dataset_labels:
            derived = max(dataset_labels) + 1
        if derived is not None and requested is not None and requested != derived:
            raise InputError(
                f"num_classes={requested} disagrees with the data: label_map={self.label_map!r} and the "
                f"dataset's labels {dataset_labels or '{}'} give {derived} classes (background included)"
            )
        num_classes = requested if requested is not None else derived
        if num_classes is None:
            raise InputError(
                "num_classes cannot be derived: set num_classes or label_map ('binary' or {raw value: class})"
            )
        if num_classes < 2:
            raise InputError(f"num_classes must be >= 2 (background included), got {num_classes}")
        self.num_classes = int(num_classes)
        self.class_names = self._class_names(dataset_labels)
        config = PipelineConfig(
            mask=getattr(self, "mask", None) is not None,
            num_classes=self.num_classes,
            label_map=self.label_map,
            spatial_dims=self.spatial_dims,
            patch_size=tuple(self.patch_size),
            **self._preprocess,
        )
        self.pipeline_config = config
        self.train_transform = build_pipeline(config, "train")
        self.eval_transform = build_pipeline(config, "eval")
        self.predict_transform = build_pipeline(config, "predict")

    def _class_names(self, dataset_labels: dict[int, str]) -> list[str]:
        names = self._requested["class_names"]
        if names is not None:
            if len(names) != self.num_classes:
                raise InputError(
                    f"class_names has {len(names)} names for num_classes={self.num_classes}: {names}"
                )
            return list(names)
        if self.label_map == "binary":
            return ["background", "foreground"]
        if isinstance(self.label_map, dict):
            grouped: dict[int, list[str]] = {}
            for raw, cls in sorted(self.label_map.items()):
                grouped.setdefault(cls, []).append(dataset_labels.get(raw, str(raw)))
            return [
                "background" if c == 0 else "+".join(grouped.get(c, [f"class{c}"]))
                for c in range(self.num_classes)
            ]
        return [
            dataset_labels.get(c, "background" if c == 0 else f"class{c}") for c in range(self.num_classes)
        ]

    # ------------------------------------------------------------------ discovery (subclasses)

    def _discover(self) -> list[Case]:
        """The labelled cases (train/val/test pool)."""
        raise NotImplementedError

    def _discover_predict(self) -> list[Case] | None:
        """The cases of the prediction inputs (``predict_root``, ...), or None when none are given."""
        raise NotImplementedError

    def _input_folders(self) -> list[Path]:
        """Folders the input data lives in (never written to)."""
        return []

    # ------------------------------------------------------------------ cases and splits

    def labelled_cases(self) -> list[Case]:
        """Discovered labelled cases (files checked to exist; headers checked when they are split)."""
        if self.cases is None:
            self.cases = self._discover()
            if not self.cases:
                folders = ", ".join(str(p) for p in self._input_folders()) or "its inputs"
                raise InputError(f"{type(self).__name__}: no labelled case found in {folders}")
        return self.cases

    def input_paths(self) -> list[Path]:
        """Every input folder and file this datamodule reads (prediction writers refuse to write there)."""
        paths = list(self._input_folders())
        for case in self.labelled_cases():
            paths += [Path(p) for p in case["image"]] + ([Path(case["label"])] if case["label"] else [])
        if self.predict_root is not None:
            paths.append(self.predict_root)
        return list(dict.fromkeys(paths))

    def split_of(self, split: Literal["train", "val", "test"]) -> list[Case]:
        """The cases of ``split``; the first call checks the headers of every case and splits them.

        Raises:
            FileNotFoundError: On missing files (named).
            ValueError: On header mismatches, bad split options or unknown case ids.
        """
        if not self.splits:
            cases = self.labelled_cases()
            check_headers(cases, atol=self.affine_atol, in_channels=self.in_channels)
            by_id = {c["case"]: c for c in cases}
            ids = split_cases(list(by_id), **self.split_options)
            self.splits = {name: [by_id[i] for i in chosen] for name, chosen in ids.items()}
            rank_zero_info(
                f"{type(self).__name__}: {len(cases)} labelled cases, {self.split_options['split']} split"
            )
        return self.splits[split]

    @cached_property
    def predict_inputs(self) -> list[Case] | None:
        """The cases of the prediction inputs, discovered once (files checked to exist).

        None when no prediction input is given: the test split's images are predicted then.
        """
        return self._discover_predict()

    def _predict_cases(self) -> list[Case]:
        cases = self.predict_inputs
        if cases is None:
            return [{**c, "label": None} for c in self.split_of("test")]
        check_headers(cases, atol=self.affine_atol, in_channels=self.in_channels)
        return cases

    # ------------------------------------------------------------------ datasets and loaders

    def build_dataset(self, split: Split) -> Dataset | None:
        """The MONAI dataset of ``split`` (None without cases); training and evaluation may be cached."""
        if split == "predict":
            items = [
                {"case": c["case"], "image": c["image"]} | ({"mask": c["mask"]} if "mask" in c else {})
                for c in self._predict_cases()
            ]
            # Never cached: Invertd checks the ids of the transforms recorded in each item.
            return case_dataset(items, self.predict_transform, "none") if items else None
        cases = self.split_of(split)
        if not cases:
            return None
        items = [{"case": c["case"], "image": c["image"], "label": c["label"]} for c in cases]
        if split != "train" and self.pipeline_config.mask:
            items = [item | {"mask": c["mask"]} for item, c in zip(items, cases, strict=True)]
        pipeline = "train" if split == "train" else "eval"
        folder = None
        if self.cache == "disk":
            options = {**self._preprocess, "label_map": self.label_map, "num_classes": self.num_classes}
            options |= {"spatial_dims": self.spatial_dims, "patch_size": self.patch_size}
            options |= {"mask": self.pipeline_config.mask}
            inputs = self._input_folders() + ([self.predict_root] if self.predict_root else [])
            folder = cache_folder(self.cache_dir, inputs, options, pipeline)
        transform = self.train_transform if split == "train" else self.eval_transform
        return case_dataset(items, transform, self.cache, folder)

    def __str__(self) -> str:
        return repr(self)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(in_channels={self.in_channels}, num_classes={self.num_classes}, "
            f"spatial_dims={self.spatial_dims}, patch_size={self.patch_size}, class_names={self.class_names})"
        )
