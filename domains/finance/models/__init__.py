"""Limit-order-book classifiers for mid-price trend prediction.

TLOB and MLPLOB (Berti & Kasneci 2025, arXiv 2502.15757), DeepLOB (Zhang et al. 2019, arXiv 1808.03668)
and a logistic-regression baseline.

Every model maps windows ``x`` of shape ``(B, T, F)`` to logits ``(B, num_horizons, num_classes)`` (no
softmax). ``MODELS`` maps the names used by the task's ``model`` option to the classes.
"""

from torch import nn

from domains.finance.models.bin import BiN
from domains.finance.models.deeplob import DeepLOB
from domains.finance.models.logreg import LogisticRegressionLOB
from domains.finance.models.mlplob import MLPLOB
from domains.finance.models.tlob import TLOB

__all__ = ["MLPLOB", "MODELS", "TLOB", "BiN", "DeepLOB", "LogisticRegressionLOB"]

MODELS: dict[str, type[nn.Module]] = {
    "tlob": TLOB,
    "mlplob": MLPLOB,
    "deeplob": DeepLOB,
    "logreg": LogisticRegressionLOB,
}
