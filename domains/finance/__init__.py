"""Finance: mid-price trend classification from limit order books (TLOB, MLPLOB, DeepLOB).

Importing the package makes the short class names (``LOBClassifier``, ``TLOB``, ``LOBSTERDataModule``,
``FI2010DataModule``) usable in configs; ``DOMAIN`` is what the ``attnlab.domains`` entry point registers.
"""

from pathlib import Path

from core.plugins import Domain
from core.utils import require

require("pandas", "finance")

from domains.finance.datamodule import LOBDataModule, LOBSTERDataModule  # noqa: E402
from domains.finance.fi2010 import FI2010DataModule  # noqa: E402
from domains.finance.models import MLPLOB, TLOB, DeepLOB, LogisticRegressionLOB  # noqa: E402
from domains.finance.module import LOBClassifier  # noqa: E402

DOMAIN = Domain(
    name="finance", smoke_config=Path(__file__).resolve().parents[2] / "configs" / "finance" / "smoke.yaml"
)

__all__ = [
    "DOMAIN",
    "MLPLOB",
    "TLOB",
    "DeepLOB",
    "FI2010DataModule",
    "LOBClassifier",
    "LOBDataModule",
    "LOBSTERDataModule",
    "LogisticRegressionLOB",
]
