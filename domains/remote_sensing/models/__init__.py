"""Networks of the remote-sensing domain, by task kind.

* Scene / patch classification (:class:`SceneClassifier`): :class:`SpectralSpatialTransformer` (pixel × band
  tokens, for patch tables such as Statlog), :class:`LWGANet` (L1) with :class:`LWGANetL0`,
  :class:`LWGANetL1`, :class:`LWGANetL2`, and :class:`DaViT` (T) with :class:`DaViTSmall`, :class:`DaViTBase`.
* Semantic segmentation (:class:`SegmentationNetwork`): :class:`LWGANetSeg` (L0 encoder + FPN) with
  :class:`LWGANetSegL1`, :class:`LWGANetSegL2`; :class:`CASWiT` (tile + wider context); :class:`BCAF`
  (multispectral tile + high-resolution panchromatic parent).
* Yield regression (:class:`YieldRegressor`): :class:`DFYP`.

The tasks receive one as ``--model.network=<Class>`` and give it the data-derived sizes (the factories
:class:`SceneClassifierFactory`, :class:`SegmentationNetworkFactory`, :class:`YieldRegressorFactory`).
"""

from domains.remote_sensing.models.base import (
    MaskedImageEncoder,
    SceneClassifier,
    SceneClassifierFactory,
    SegmentationNetwork,
    SegmentationNetworkFactory,
    YieldRegressor,
    YieldRegressorFactory,
)
from domains.remote_sensing.models.bcaf import BCAF
from domains.remote_sensing.models.caswit import CASWiT
from domains.remote_sensing.models.davit import DaViT, DaViTBase, DaViTSmall
from domains.remote_sensing.models.dfyp import DFYP
from domains.remote_sensing.models.lwganet import (
    LWGANet,
    LWGANetL0,
    LWGANetL1,
    LWGANetL2,
    LWGANetSeg,
    LWGANetSegL1,
    LWGANetSegL2,
)
from domains.remote_sensing.models.spectral import SpectralSpatialTransformer

__all__ = [
    "BCAF",
    "DFYP",
    "CASWiT",
    "DaViT",
    "DaViTBase",
    "DaViTSmall",
    "LWGANet",
    "LWGANetL0",
    "LWGANetL1",
    "LWGANetL2",
    "LWGANetSeg",
    "LWGANetSegL1",
    "LWGANetSegL2",
    "MaskedImageEncoder",
    "SceneClassifier",
    "SceneClassifierFactory",
    "SegmentationNetwork",
    "SegmentationNetworkFactory",
    "SpectralSpatialTransformer",
    "YieldRegressor",
    "YieldRegressorFactory",
]
