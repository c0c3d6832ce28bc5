"""Finance: mid-price trend classification from limit order books (TLOB, MLPLOB, DeepLOB).

Importing the package registers the data-derived sizes the CLI links from datamodule to task, and makes
the short class names (``LOBClassifier``, ``LOBSTERDataModule``, ``FI2010DataModule``) usable in configs.
"""

from core.data import register_data_links
from domains.finance.datamodule import FI2010DataModule, LOBDataModule, LOBSTERDataModule
from domains.finance.module import LOBClassifier

register_data_links("num_features", "num_lob_features", "seq_len", "horizons", "num_classes")

__all__ = ["FI2010DataModule", "LOBClassifier", "LOBDataModule", "LOBSTERDataModule"]
