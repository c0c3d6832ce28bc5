"""Sequential recommenders: SASRec, BERT4Rec, IGR-SR, GRU4Rec and a popularity baseline.

Every network subclasses :class:`~domains.recsys.models.base.SeqRecNetwork`: it maps left-padded item
histories ``(B, L)`` (0 = padding, most recent last) to hidden states with ``encode``, logits over the
catalogue (``num_items + 1`` columns, column 0 = padding) with ``scores`` and a ranking vector with
``user_vector``; ``objective`` tells the task how to train it. The task receives one of these classes (or
a factory of one) as its ``network`` argument: ``--model.network=BERT4Rec --model.network.mask_prob=0.6``.
"""

from domains.recsys.models.base import SeqRecNetwork, SeqRecNetworkFactory
from domains.recsys.models.bert4rec import BERT4Rec
from domains.recsys.models.gru4rec import GRU4Rec
from domains.recsys.models.igrsr import IGRSR
from domains.recsys.models.popularity import PopularityRecommender
from domains.recsys.models.sasrec import SASRec

__all__ = [
    "IGRSR",
    "BERT4Rec",
    "GRU4Rec",
    "PopularityRecommender",
    "SASRec",
    "SeqRecNetwork",
    "SeqRecNetworkFactory",
]
