"""LightningDataModules for 3-D (and slice-wise 2-D) medical image segmentation with MONAI pipelines.

* :class:`DecathlonDataModule` reads the Medical Segmentation Decathlon layout (``root/dataset.json`` or a
  separate datalist whose paths are relative to ``root``).
* :class:`CaseFolderDataModule` reads one folder per case with file-name patterns per modality and label
  (e.g. the BraTS 2015 DeepMedic subset: ``Flair*.nii.gz``, ``T1c*.nii.gz``, ``OTMultiClass.nii.gz``).

Both share :class:`MedicalDataModule`: case splits (ratio, k-fold, fixed lists), upfront checks (files exist,
modalities and label on one voxel grid, from NIfTI headers only), MONAI pipelines
(:mod:`domains.medical.transforms`), optional caching (memory or disk, never inside the input folders) and
the batch contracts of the segmentation task:

* train: ``{"image": (B, C, *patch) float32, "label": (B, 1, *patch) float32 class indices, "case": [...]}``
  with ``B = batch_size * samples_per_volume`` patches; 2-D mode cuts ``(H, W)`` slices of the last axis.
* val / test (one whole preprocessed volume, 3-D even in 2-D mode): ``{"image": (1, C, H, W, D) MetaTensor,
  "label": (1, 1, H, W, D) MetaTensor, "case": [id], "voxel_ml": (1,) float64}``.
* predict: ``{"image": (1, C, H, W, D) MetaTensor with applied_operations, "case": [id]}``;
  :attr:`MedicalDataModule.predict_transform` is the Compose to give ``Invertd``.
"""

import copy
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info

from core.utils import require
from domains.medical.cases import (
    AFFINE_ATOL,
    Case,
    LabelMap,
    check_headers,
    check_label_map,
    decathlon_cases,
    folder_cases,
    image_file_cases,
    label_map_num_classes,
    read_datalist,
)

__all__ = ["CaseFolderDataModule", "DecathlonDataModule", "MedicalDataModule", "split_cases"]

SplitName = Literal["train", "val", "test", "predict"]
STAGE_SPLITS: dict[str | None, tuple[SplitName, ...]] = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("predict",),
    None: ("train", "val", "test", "predict"),
}
DEFAULT_PATCH = {3: [32, 32, 32], 2: [64, 64]}


def split_cases(
    ids: list[str],
    split: Literal["ratio", "kfold", "fixed"],
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    num_folds: int = 5,
    fold: int = 0,
    seed: int = 0,
    val_cases: list[str] | None = None,
    test_cases: list[str] | None = None,
) -> dict[str, list[str]]:
    """Split case ids into train / val / test (deterministic for a given seed, whatever the input order).

    Args:
        ids: Case ids.
        split: ``ratio`` (shuffled, then ``round(fraction * n)`` cases, at least 1 for a positive fraction,
            go to val and to test), ``kfold`` (shuffled into ``num_folds`` near-equal folds; fold ``fold`` is
            both val and test, the others train) or ``fixed`` (``val_cases`` / ``test_cases``, the rest
            train).
        val_fraction: Share of the cases for validation (``ratio``).
        test_fraction: Share of the cases for test (``ratio``).
        num_folds: Folds (``kfold``).
        fold: Held-out fold index (``kfold``).
        seed: Shuffling seed (``ratio``, ``kfold``).
        val_cases: Validation ids (``fixed``).
        test_cases: Test ids (``fixed``).

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, each sorted.

    Raises:
        ValueError: On fractions/folds out of range, unknown ids, or an empty training split.
    """
    ordered = sorted(ids)
    n = len(ordered)
    order = [ordered[i] for i in np.random.default_rng(seed).permutation(n)]
    if split == "ratio":
        if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1):
            raise ValueError(
                f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in [0, 1)"
            )
        n_val = max(round(val_fraction * n), 1) if val_fraction > 0 else 0
        n_test = max(round(test_fraction * n), 1) if test_fraction > 0 else 0
        parts = {
            "val": order[:n_val],
            "test": order[n_val : n_val + n_test],
            "train": order[n_val + n_test :],
        }
    elif split == "kfold":
        if num_folds < 2 or not 0 <= fold < num_folds:
            raise ValueError(
                f"kfold needs num_folds >= 2 and 0 <= fold < num_folds, got {num_folds=}, {fold=}"
            )
        if n < num_folds:
            raise ValueError(f"kfold with num_folds={num_folds} needs at least that many cases, got {n}")
        held = [str(c) for c in np.array_split(np.array(order, dtype=object), num_folds)[fold]]
        parts = {"val": held, "test": list(held), "train": [c for c in order if c not in set(held)]}
    elif split == "fixed":
        if not val_cases and not test_cases:
            raise ValueError("split='fixed' needs val_cases and/or test_cases (case ids)")
        known = set(ordered)
        for name, chosen in (("val_cases", val_cases or []), ("test_cases", test_cases or [])):
            unknown = [c for c in chosen if c not in known]
            if unknown:
                raise ValueError(f"{name} holds unknown case ids {unknown}; known ids include {ordered[:5]}")
        held = set(val_cases or []) | set(test_cases or [])
        parts = {
            "val": list(val_cases or []),
            "test": list(test_cases or []),
            "train": [c for c in ordered if c not in held],
        }
    else:
        raise ValueError(f"split must be ratio, kfold or fixed, got {split!r}")
    if not parts["train"]:
        raise ValueError(f"the {split} split of {n} cases leaves no training case: {parts}")
    return {k: sorted(v) for k, v in parts.items()}


class MedicalDataModule(pl.LightningDataModule):
    """Base of the segmentation datamodules: options, splits, pipelines, caching and loaders.

    Subclasses provide :meth:`_discover` (the labelled cases), :meth:`_discover_predict` (the cases of
    ``predict_root``), ``in_channels`` and the class names. Sizes the model needs (``in_channels``,
    ``num_classes``, ``spatial_dims``, ``patch_size``) are attributes right after ``__init__``; images are
    read only in ``setup`` (every rank builds its own datasets, so it is DDP-safe).

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
        batch_size: Volumes per training batch (a batch holds ``batch_size * samples_per_volume`` patches).
            Validation, test and predict always use 1 whole volume.
        num_workers: DataLoader worker processes.
        pixdim: Resample to this voxel size (mm, one per axis); default: keep the files' spacing.
        orientation: ``Orientationd`` axis codes (default ``RAS``); None keeps the files' orientation.
        normalize: ``zscore`` (per channel over non-zero voxels), ``range`` (``intensity_range`` → [0, 1]),
            ``percentile`` (``percentiles`` → [0, 1], per channel) or ``none`` (already normalised data).
        intensity_range: ``(a_min, a_max)`` for ``normalize='range'`` (e.g. CT windows).
        percentiles: ``(lower, upper)`` for ``normalize='percentile'``.
        crop_foreground: Crop each volume to the bounding box of its voxels above the channel minimum
            (raw background 0, or the constant background of pre-normalised data).
        crop_margin: Voxels kept around that box.
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
            ``fold``, ``seed``; the held-out fold is both val and test) or ``fixed`` (``val_cases`` /
            ``test_cases`` ids, every other case trains).
        val_fraction: Validation share for ``ratio``.
        test_fraction: Test share for ``ratio``.
        num_folds: Folds for ``kfold``.
        fold: Held-out fold for ``kfold``.
        seed: Split seed.
        val_cases: Validation case ids for ``fixed``.
        test_cases: Test case ids for ``fixed``.
        predict_root: Images to predict (no labels needed); default: the test split's images.
        affine_atol: Tolerance (mm) of the affine comparison between modalities and label.
    """

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
        batch_size: int = 2,
        num_workers: int = 0,
        pixdim: list[float] | None = None,
        orientation: str | None = "RAS",
        normalize: Literal["zscore", "range", "percentile", "none"] = "zscore",
        intensity_range: tuple[float, float] | None = None,
        percentiles: tuple[float, float] = (0.5, 99.5),
        crop_foreground: bool = True,
        crop_margin: int = 0,
        flip_prob: float = 0.5,
        intensity_scale_prob: float = 0.5,
        intensity_shift_prob: float = 0.5,
        intensity_scale: float = 0.1,
        intensity_shift: float = 0.1,
        cache: Literal["none", "memory", "disk"] = "none",
        cache_dir: str | None = None,
        split: Literal["ratio", "kfold", "fixed"] = "ratio",
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        num_folds: int = 5,
        fold: int = 0,
        seed: int = 0,
        val_cases: list[str] | None = None,
        test_cases: list[str] | None = None,
        predict_root: str | None = None,
        affine_atol: float = AFFINE_ATOL,
    ) -> None:
        super().__init__()
        require("monai", "medical")
        require("nibabel", "medical")
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        patch = list(DEFAULT_PATCH[spatial_dims] if patch_size is None else patch_size)
        if len(patch) != spatial_dims or any(int(p) < 1 for p in patch):
            raise ValueError(
                f"patch_size must hold {spatial_dims} positive sizes (spatial_dims), got {patch_size}"
            )
        if samples_per_volume < 1 or batch_size < 1 or num_workers < 0:
            raise ValueError(
                f"samples_per_volume ({samples_per_volume}) and batch_size ({batch_size}) must be >= 1, "
                f"num_workers ({num_workers}) >= 0"
            )
        if pos < 0 or neg < 0 or pos + neg <= 0:
            raise ValueError(f"pos ({pos}) and neg ({neg}) must be >= 0 with a positive sum")
        if pixdim is not None and (len(pixdim) != 3 or any(p <= 0 for p in pixdim)):
            raise ValueError(f"pixdim must hold 3 positive voxel sizes in mm, got {pixdim}")
        if normalize not in ("zscore", "range", "percentile", "none"):
            raise ValueError(f"normalize must be zscore, range, percentile or none, got {normalize!r}")
        if normalize == "range" and (intensity_range is None or len(intensity_range) != 2):
            raise ValueError("normalize='range' needs intensity_range=[a_min, a_max]")
        for name, p in (("flip_prob", flip_prob), ("intensity_scale_prob", intensity_scale_prob)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
        if not 0 <= intensity_shift_prob <= 1:
            raise ValueError(
                f"intensity_shift_prob must be a probability in [0, 1], got {intensity_shift_prob}"
            )
        if cache not in ("none", "memory", "disk"):
            raise ValueError(f"cache must be none, memory or disk, got {cache!r}")
        self.label_map = check_label_map(label_map)
        self.spatial_dims: Literal[2, 3] = spatial_dims
        self.patch_size: list[int] = [int(p) for p in patch]
        self.slice_axis = 2  # 2-D mode: slices of the last spatial axis (pick another one with `orientation`)
        self.samples_per_volume = samples_per_volume
        self.batch_size = batch_size
        self.num_workers = num_workers
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
            "seed": seed,
            "val_cases": list(val_cases) if val_cases is not None else None,
            "test_cases": list(test_cases) if test_cases is not None else None,
        }
        split_cases([f"c{i}" for i in range(max(num_folds, 3))], **self._dry_split_options())
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
        }
        self.cases: list[Case] | None = None
        self.splits: dict[str, list[Case]] = {}
        self.datasets: dict[str, Any] = {}

    def _dry_split_options(self) -> dict[str, Any]:
        """Split options checked on dummy ids at init (unknown ids of ``fixed`` are checked in setup)."""
        options = dict(self.split_options)
        if options["split"] == "fixed":
            options["val_cases"] = ["c0"] if options["val_cases"] else None
            options["test_cases"] = ["c1"] if options["test_cases"] else None
        return options

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
            raise ValueError(
                f"num_classes={requested} disagrees with the data: label_map={self.label_map!r} and the "
                f"dataset's labels {dataset_labels or '{}'} give {derived} classes (background included)"
            )
        num_classes = requested if requested is not None else derived
        if num_classes is None:
            raise ValueError(
                "num_classes cannot be derived: set num_classes or label_map ('binary' or {raw value: class})"
            )
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background included), got {num_classes}")
        self.num_classes = int(num_classes)
        self.class_names = self._class_names(dataset_labels)
        config = PipelineConfig(
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
        # The CLI links these into the task. The saved hyper-parameters must hold the resolved values, or
        # Lightning refuses to merge the datamodule's hparams with the task's (None vs the linked value).
        # (Lightning compares the hparams as first saved, hence the initial copy is refreshed too.)
        for name in ("num_classes", "patch_size", "spatial_dims", "class_names"):
            if name in self.hparams:
                self.hparams[name] = getattr(self, name)
        if hasattr(self, "_hparams_initial"):
            self._hparams_initial = copy.deepcopy(self._hparams)

    @property
    def label_names(self) -> list[str]:
        """``class_names`` under the name the CLI links into the segmentation task's ``label_names``."""
        return list(self.class_names)

    def _class_names(self, dataset_labels: dict[int, str]) -> list[str]:
        names = self._requested["class_names"]
        if names is not None:
            if len(names) != self.num_classes:
                raise ValueError(
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

    def _discover_predict(self) -> list[Case]:
        """The cases of ``predict_root``."""
        raise NotImplementedError

    def _input_folders(self) -> list[Path]:
        """Folders the input data lives in (never written to)."""
        return []

    # ------------------------------------------------------------------ setup

    def labelled_cases(self) -> list[Case]:
        """Discovered labelled cases (files checked to exist; headers checked in ``setup``)."""
        if self.cases is None:
            self.cases = self._discover()
            if not self.cases:
                raise ValueError(f"{type(self).__name__}: no case found")
        return self.cases

    def input_paths(self) -> list[Path]:
        """Every input folder and file this datamodule reads (prediction writers refuse to write there)."""
        paths = list(self._input_folders())
        for case in self.labelled_cases():
            paths += [Path(p) for p in case["image"]] + ([Path(case["label"])] if case["label"] else [])
        if self.predict_root is not None:
            paths.append(self.predict_root)
        return list(dict.fromkeys(paths))

    def setup(self, stage: str | None = None) -> None:
        """Discover and check the cases (once), split them and build the datasets of the stage.

        Args:
            stage: ``fit``, ``validate``, ``test``, ``predict`` or None (every split).

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
                f"{type(self).__name__}: {len(cases)} cases, split {self.split_options['split']}: "
                + ", ".join(f"{name} {len(self.splits[name])}" for name in ("train", "val", "test"))
            )
        for name in STAGE_SPLITS.get(stage, STAGE_SPLITS[None]):
            if name not in self.datasets:
                self.datasets[name] = self._build(name)

    def _predict_cases(self) -> list[Case]:
        if self.predict_root is None:
            return [{**c, "label": None} for c in self.splits["test"]]
        cases = self._discover_predict()
        check_headers(cases, atol=self.affine_atol, in_channels=self.in_channels)
        return cases

    def _build(self, name: SplitName) -> Any:
        from monai.data import CacheDataset, Dataset, PersistentDataset

        if name == "predict":
            items = [{"case": c["case"], "image": c["image"]} for c in self._predict_cases()]
            rank_zero_info(f"{type(self).__name__}: predict {len(items)} cases")
            # Never cached: Invertd checks the ids of the transforms recorded in each item.
            return Dataset(items, transform=self.predict_transform) if items else None
        cases = self.splits[name]
        if not cases:
            return None
        items = [{"case": c["case"], "image": c["image"], "label": c["label"]} for c in cases]
        transform = self.train_transform if name == "train" else self.eval_transform
        if self.cache == "memory":
            return CacheDataset(items, transform=transform, cache_rate=1.0, num_workers=None, progress=False)
        if self.cache == "disk":
            folder = self._cache_folder("train" if name == "train" else "eval")
            return PersistentDataset(items, transform=transform, cache_dir=folder)
        return Dataset(items, transform=transform)

    def _cache_folder(self, pipeline: str) -> Path:
        """``cache_dir/<hash of the preprocessing options>/<pipeline>``; refused inside an input folder."""
        base = self.cache_dir.resolve()
        for folder in self._input_folders() + ([self.predict_root] if self.predict_root else []):
            folder = Path(folder).resolve()
            if base == folder or folder in base.parents:
                raise ValueError(
                    f"cache_dir {self.cache_dir} lies inside the input folder {folder}; the input data is "
                    "never written to: choose a cache_dir elsewhere (e.g. under runs/)"
                )
        options = {**self._preprocess, "label_map": self.label_map, "num_classes": self.num_classes}
        options |= {"spatial_dims": self.spatial_dims, "patch_size": self.patch_size}
        digest = hashlib.sha1(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[:12]
        folder = base / digest / pipeline
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # ------------------------------------------------------------------ loaders

    def train_dataloader(self) -> Any:
        """Shuffled patches: ``batch_size`` volumes × ``samples_per_volume`` patches per batch."""
        return self._loader("train", shuffle=True, batch_size=self.batch_size)

    def val_dataloader(self) -> Any:
        """Whole validation volumes, one per batch; an empty list when the split is empty."""
        if self._dataset("val", required=False) is None:
            return []
        return self._loader("val", shuffle=False, batch_size=1)

    def test_dataloader(self) -> Any:
        """Whole test volumes, one per batch."""
        return self._loader("test", shuffle=False, batch_size=1)

    def predict_dataloader(self) -> Any:
        """Whole images to predict, one per batch."""
        return self._loader("predict", shuffle=False, batch_size=1)

    def _dataset(self, name: SplitName, required: bool = True) -> Any:
        if name not in self.datasets:
            raise RuntimeError(f"{type(self).__name__}: the {name} split is not set up; call setup() first")
        dataset = self.datasets[name]
        if dataset is None and required:
            raise ValueError(
                f"{type(self).__name__}: the {name} split is empty; adjust the split options "
                "(val_fraction / test_fraction, val_cases / test_cases) or predict_root"
            )
        return dataset

    def _loader(self, name: SplitName, shuffle: bool, batch_size: int) -> Any:
        from monai.data import DataLoader, list_data_collate

        dataset = self._dataset(name)
        sampler = None
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if name in ("val", "test") and distributed:
            # Lightning's default DistributedSampler pads the set to a multiple of the world size, which
            # would score some cases twice; this one gives every case to exactly one rank (the metrics are
            # sums, so uneven shares are fine). Lightning keeps a sampler that is already distributed.
            from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

            sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle if sampler is None else False,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=list_data_collate,
            persistent_workers=self.num_workers > 0,
        )

    def __str__(self) -> str:
        return repr(self)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(in_channels={self.in_channels}, num_classes={self.num_classes}, "
            f"spatial_dims={self.spatial_dims}, patch_size={self.patch_size}, class_names={self.class_names})"
        )


class DecathlonDataModule(MedicalDataModule):
    """Medical Segmentation Decathlon layout: ``root/dataset.json`` (or ``datalist``) → labelled cases.

    The datalist's ``training`` entries (``{"image": path or [paths], "label": path}``, relative to
    ``root``) are the train/val/test pool, split by ``split``. ``in_channels`` is the number of
    ``"modality"`` entries (else the channels of the first image's header) and class names come from
    ``"labels"``. Case ids are the image file names without ``.nii.gz``.

    Args:
        root: Dataset folder; the datalist's relative paths are resolved against it.
        datalist: Datalist JSON (e.g. ``data/medical/hippocampus_full.json`` with
            ``root=../shared/data/medical/msd_hippocampus``); default ``root/dataset.json``.
        predict_files: Images to predict (relative to ``root`` or absolute), instead of ``predict_root`` (a
            folder whose every NIfTI file is one case) or the default (the test split's images).
        **kwargs: The options of :class:`MedicalDataModule`.
    """

    def __init__(
        self, root: str, datalist: str | None = None, predict_files: list[str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        if predict_files is not None and self.predict_root is not None:
            raise ValueError("give predict_files or predict_root, not both")
        self.root = Path(root)
        self.datalist = read_datalist(self.root, datalist)
        self.predict_files = list(predict_files) if predict_files is not None else None
        channels = len(self.datalist.modalities) or self._header_channels()
        self._finish_init(channels, self.datalist.labels)

    def _header_channels(self) -> int:
        """Channels of the first training image (header only) when the datalist names no modality."""
        cases = decathlon_cases(self.datalist)
        if not cases:
            raise ValueError(f"{self.datalist.path} has no training entry")
        import nibabel as nib

        total = 0
        for path in cases[0]["image"]:
            shape = nib.load(path).shape
            total += shape[3] if len(shape) == 4 else 1
        return total

    def _discover(self) -> list[Case]:
        return decathlon_cases(self.datalist)

    def _discover_predict(self) -> list[Case]:
        if self.predict_files is not None:
            return decathlon_cases(
                type(self.datalist)(self.datalist.path, self.root, test=list(self.predict_files)), "test"
            )
        assert self.predict_root is not None
        return image_file_cases(self.predict_root)

    def _predict_cases(self) -> list[Case]:
        if self.predict_files is not None:
            cases = self._discover_predict()
            check_headers(cases, atol=self.affine_atol, in_channels=self.in_channels)
            return cases
        return super()._predict_cases()

    def _input_folders(self) -> list[Path]:
        return [self.root, self.datalist.path]

    def input_paths(self) -> list[Path]:
        """The root, the datalist, every case file and the prediction inputs."""
        paths = super().input_paths()
        if self.predict_files is not None:
            paths += [Path(c["image"][0]) for c in self._discover_predict()]
        return list(dict.fromkeys(paths))


class CaseFolderDataModule(MedicalDataModule):
    """One folder per case with file-name patterns per modality and label (e.g. BraTS DeepMedic subsets).

    Case folders are ``root.glob(case_glob)``; in each, every pattern of ``modalities`` must match exactly
    one file (stacked as channels in that order) and ``label`` exactly one label map. Case ids are the
    case folder's path relative to ``root`` with ``/`` replaced by ``_`` (``*/*`` on BraTS gives
    ``train_brats_2013_pat0005_1``). ``in_channels = len(modalities)``.

    Args:
        root: Dataset folder.
        case_glob: Glob of the case folders relative to ``root`` (``*``, or ``*/*`` for ``train/<case>`` +
            ``validation/<case>``).
        modalities: File-name glob per modality, e.g. ``["Flair*.nii.gz", "T1c*.nii.gz"]``.
        label: File-name glob of the label map, e.g. ``OTMultiClass.nii.gz``.
        **kwargs: The options of :class:`MedicalDataModule`. ``predict_root`` holds case folders found
            with the same ``case_glob`` and ``modalities`` (labels not needed). Without ``label_map``,
            ``num_classes`` must be given (there is no dataset description to derive it from).
    """

    def __init__(self, root: str, case_glob: str, modalities: list[str], label: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        if not modalities:
            raise ValueError("modalities must list at least one file-name pattern, e.g. ['Flair*.nii.gz']")
        self.root = Path(root)
        self.case_glob = case_glob
        self.modalities = list(modalities)
        self.label = label
        self._finish_init(len(self.modalities), {})

    def _discover(self) -> list[Case]:
        return folder_cases(self.root, self.case_glob, self.modalities, self.label)

    def _discover_predict(self) -> list[Case]:
        assert self.predict_root is not None
        return folder_cases(
            self.predict_root, self.case_glob, self.modalities, self.label, require_label=False
        )

    def _input_folders(self) -> list[Path]:
        return [self.root]
