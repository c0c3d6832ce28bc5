"""Limit-order-book classifiers for mid-price trend prediction.

TLOB and MLPLOB (Berti & Kasneci 2025, arXiv 2502.15757), DeepLOB (Zhang et al. 2019, arXiv 1808.03668)
and a logistic-regression baseline. Every network is a :class:`LOBNetwork`: windows ``x`` of shape
``(B, T, F)`` in, logits ``(B, num_horizons, num_classes)`` out (no softmax). The task chooses one with
``--model.network=<Class>``.
"""

from domains.finance.models.base import LOBNetwork, LOBNetworkFactory
from domains.finance.models.bin import BiN
from domains.finance.models.deeplob import DeepLOB
from domains.finance.models.logreg import LogisticRegressionLOB
from domains.finance.models.mlplob import MLPLOB
from domains.finance.models.tlob import TLOB

__all__ = ["MLPLOB", "TLOB", "BiN", "DeepLOB", "LOBNetwork", "LOBNetworkFactory", "LogisticRegressionLOB"]
