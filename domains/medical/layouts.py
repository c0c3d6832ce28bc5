"""The datamodules of the two data layouts, on :class:`~domains.medical.datamodule.MedicalDataModule`.

* :class:`DecathlonDataModule` reads the Medical Segmentation Decathlon layout (``root/dataset.json`` or a
  separate datalist whose paths are relative to ``root``).
* :class:`CaseFolderDataModule` reads one folder per case with file-name patterns per modality and label
  (e.g. the BraTS 2015 DeepMedic subset: ``Flair*.nii.gz``, ``T1c*.nii.gz``, ``OTMultiClass.nii.gz``).
"""

from pathlib import Path
from typing import Any

from core.utils import InputError
from domains.medical.cases import (
    Case,
    Datalist,
    case_channels,
    decathlon_cases,
    folder_cases,
    image_file_cases,
    read_datalist,
)
from domains.medical.datamodule import RESOLVED, MedicalDataModule

__all__ = ["CaseFolderDataModule", "DecathlonDataModule"]


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
        self.save_hyperparameters(ignore=RESOLVED)
        if predict_files is not None and self.predict_root is not None:
            raise InputError("give predict_files or predict_root, not both")
        self.root = Path(root)
        self.datalist = read_datalist(self.root, datalist)
        self.predict_files = list(predict_files) if predict_files is not None else None
        # Without "modality" entries: the channels of the first case's image headers (the cases are
        # discovered once, here).
        channels = len(self.datalist.modalities) or case_channels(self.labelled_cases()[0])
        self._finish_init(channels, self.datalist.labels)

    def _discover(self) -> list[Case]:
        return decathlon_cases(self.datalist)

    def _discover_predict(self) -> list[Case] | None:
        if self.predict_files is not None:
            return decathlon_cases(Datalist(self.datalist.path, self.root, test=self.predict_files), "test")
        return image_file_cases(self.predict_root) if self.predict_root is not None else None

    def _input_folders(self) -> list[Path]:
        return [self.root, self.datalist.path]

    def input_paths(self) -> list[Path]:
        """The root, the datalist, every case file and the prediction inputs."""
        paths = super().input_paths()
        if self.predict_files is not None:
            paths += [Path(c["image"][0]) for c in self.predict_inputs or []]
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
        mask: File-name glob of a per-case mask (e.g. ``brainmask.nii.gz``), loaded with the image for
            validation, test and predict (resampled nearest) so that ``--model.restrict_to_mask`` can drop
            predicted foreground outside it. Every case, prediction inputs included, must have one.
        **kwargs: The options of :class:`MedicalDataModule`. ``predict_root`` holds case folders found
            with the same ``case_glob`` and ``modalities`` (labels not needed). Without ``label_map``,
            ``num_classes`` must be given (there is no dataset description to derive it from).
    """

    def __init__(
        self,
        root: str,
        case_glob: str,
        modalities: list[str],
        label: str,
        mask: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.mask = mask
        super().__init__(**kwargs)
        self.save_hyperparameters(ignore=RESOLVED)
        if not modalities:
            raise InputError("modalities must list at least one file-name pattern, e.g. ['Flair*.nii.gz']")
        self.root = Path(root)
        self.case_glob = case_glob
        self.modalities = list(modalities)
        self.label = label
        self._finish_init(len(self.modalities), {})

    def _discover(self) -> list[Case]:
        return folder_cases(self.root, self.case_glob, self.modalities, self.label, mask=self.mask)

    def _discover_predict(self) -> list[Case] | None:
        if self.predict_root is None:
            return None
        return folder_cases(
            self.predict_root,
            self.case_glob,
            self.modalities,
            self.label,
            require_label=False,
            mask=self.mask,
        )

    def _input_folders(self) -> list[Path]:
        return [self.root]
