"""Recommendation: next-item prediction from interaction sequences (SASRec, BERT4Rec, IGR-SR, GRU4Rec, Pop).

Importing the package registers the data-derived values the CLI links from datamodule to task
(``num_items``, ``max_len``, ``mask_history``) and makes the short class names
(``SequentialRecommendation``, ``SeqRecDataModule``) usable in configs.
"""

from core.data import register_data_links
from domains.recsys.datamodule import SeqRecDataModule
from domains.recsys.module import SequentialRecommendation

register_data_links("num_items", "max_len", "mask_history")

__all__ = ["SeqRecDataModule", "SequentialRecommendation"]
