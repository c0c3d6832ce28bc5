"""Data plumbing shared by every domain's datamodules."""

from core.data.base import SPLITS, STAGE_SPLITS, BaseDataModule, Split

__all__ = ["SPLITS", "STAGE_SPLITS", "BaseDataModule", "Split"]
