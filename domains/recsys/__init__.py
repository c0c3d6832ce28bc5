"""Recommendation: next-item prediction from interaction sequences (SASRec, BERT4Rec, IGR-SR, GRU4Rec, Pop).

Importing the package makes the short class names usable in configs: the task
(``SequentialRecommendation``), the datamodule (``SeqRecDataModule``, whose ``links`` give the task
``num_items``, ``max_len`` and ``mask_history``) and the networks (``SASRec``, ``BERT4Rec``, ``IGRSR``,
``GRU4Rec``, ``PopularityRecommender``). :data:`DOMAIN` registers the domain with the ``attnlab`` command.
"""

from pathlib import Path

from core.plugins import Domain
from domains.recsys.datamodule import SeqRecDataModule
from domains.recsys.models import (
    IGRSR,
    BERT4Rec,
    GRU4Rec,
    PopularityRecommender,
    SASRec,
    SeqRecNetwork,
    SeqRecNetworkFactory,
)
from domains.recsys.module import SequentialRecommendation

__all__ = [
    "DOMAIN",
    "IGRSR",
    "BERT4Rec",
    "GRU4Rec",
    "PopularityRecommender",
    "SASRec",
    "SeqRecDataModule",
    "SeqRecNetwork",
    "SeqRecNetworkFactory",
    "SequentialRecommendation",
]

DOMAIN = Domain(
    name="recsys", smoke_config=Path(__file__).resolve().parents[2] / "configs" / "recsys" / "smoke.yaml"
)
