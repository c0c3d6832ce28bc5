"""Separation networks of the speech domain: :class:`SeparationNetwork` s, ``(B, T) -> (B, S, T)``.

* :class:`ConvTasNet`: the TCN baseline (Luo & Mesgarani 2019), layer for layer torchaudio's.
* :class:`MossFormer` (paper's L configuration, 42.1 M parameters) and the CPU presets
  :class:`MossFormerSmall`, :class:`MossFormerTiny` (Zhao & Ma 2023).
* :class:`DualPathSeparator` (SepFormer defaults) and :class:`DualPathTiny`: DPRNN/SepFormer chunking with
  injected intra- and inter-chunk mixers (``--model.attention=<mixer>``).

The task receives one as ``--model.network=<Class>`` and gives it ``num_sources``
(:class:`SeparationNetworkFactory`).
"""

from domains.speech.models.base import SeparationNetwork, SeparationNetworkFactory
from domains.speech.models.convtasnet import ConvTasNet
from domains.speech.models.dualpath import DualPathSeparator, DualPathTiny
from domains.speech.models.mossformer import MossFormer, MossFormerSmall, MossFormerTiny

__all__ = [
    "ConvTasNet",
    "DualPathSeparator",
    "DualPathTiny",
    "MossFormer",
    "MossFormerSmall",
    "MossFormerTiny",
    "SeparationNetwork",
    "SeparationNetworkFactory",
]
