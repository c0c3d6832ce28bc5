"""Sequential recommenders: SASRec, BERT4Rec, IGR-SR, GRU4Rec and a popularity baseline.

Every model maps left-padded item histories ``(B, L)`` (0 = padding, most recent last) to hidden states
with ``encode``, logits over the catalogue (``num_items + 1`` columns, column 0 = padding) with ``scores``
and a ranking vector with ``user_vector``; ``objective`` tells the task how to train it (``causal``
next-item, ``cloze`` masked-item, or ``none``). ``MODELS`` maps the names of the task's ``model`` option
to the classes.
"""

from torch import nn

from domains.recsys.models.bert4rec import BERT4Rec
from domains.recsys.models.gru4rec import GRU4Rec
from domains.recsys.models.igrsr import IGRSR
from domains.recsys.models.popularity import PopularityRecommender
from domains.recsys.models.sasrec import SASRec

__all__ = ["IGRSR", "MODELS", "BERT4Rec", "GRU4Rec", "PopularityRecommender", "SASRec"]

MODELS: dict[str, type[nn.Module]] = {
    "sasrec": SASRec,
    "bert4rec": BERT4Rec,
    "igrsr": IGRSR,
    "gru4rec": GRU4Rec,
    "pop": PopularityRecommender,
}
