"""A minimal attnlab domain: classify the rows of a CSV table (the template of docs/adding-a-domain.md).

Register it in your package's ``pyproject.toml``::

    [project.entry-points."attnlab.domains"]
    tabular = "tabular:DOMAIN"

and ``attnlab fit --config smoke.yaml`` finds ``TabularClassifier``, ``CSVDataModule``, ``MLP`` and
``FeatureTransformer`` by their short names.
"""

from pathlib import Path

from core.plugins import Domain
from tabular.datamodule import CSVDataModule
from tabular.models import MLP, FeatureTransformer
from tabular.task import TabularClassifier

DOMAIN = Domain(name="tabular", smoke_config=Path(__file__).resolve().parent / "smoke.yaml")

__all__ = ["DOMAIN", "MLP", "CSVDataModule", "FeatureTransformer", "TabularClassifier"]
