"""LightningDataModule for next-item recommendation from users' interaction sequences.

:class:`SeqRecDataModule` reads interactions (RecBole atomic files, one-line-per-user sequence files,
MovieLens ``u.data`` / ``ratings.dat``, CSV), preprocesses them once (rating threshold, k-core, short users
dropped and reported), splits every user's sequence in time order, optionally injects noise into the
training part, and builds the batches **on the fly** from the compact :class:`SequenceData` tensors (one
flat item tensor plus offsets): a dataset over sample indices and a collate function that slices and
left-pads with vectorised torch ops, without a Python object per interaction.

Batches (item ids 1..num_items, 0 = padding):

* train: ``{"items": (B, max_len + 1), "user": (B,)}``, left-padded, most recent item last; the task
  derives inputs and targets (causal: ``items[:, :-1]`` → ``items[:, 1:]``; cloze: masks ``items[:, 1:]``).
* val / test / predict: ``{"items": (B, max_len), "target": (B,), "user": (B,), "seen": (B, S)}`` with the
  left-padded history ending just before the target, the target (0 in predict), and every item of that
  history (0-padded on the right, ``S`` = longest history of the batch) for history masking; with sampled
  ranking, val and test batches also hold ``"candidates": (B, 1 + num_negatives)`` = target then negatives.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from domains.recsys.data import SequenceData
from domains.recsys.preprocess import build_sequences
from domains.recsys.readers import detect_format, read_interactions
from domains.recsys.splits import Split, inject_noise, leave_one_out, time_ratio_split

__all__ = [
    "EvalBatchCollate",
    "SeqRecDataModule",
    "TrainBatchCollate",
    "left_pad_windows",
    "right_pad_slices",
    "sample_negatives",
]

SplitName = Literal["train", "val", "test", "predict"]
MIN_TRAIN_ITEMS = 2  # a training sequence needs one (input, target) pair
NEGATIVE_CHUNK = 512  # rows of the (rows, num_items + 1) sampling-weight matrix built at once


# ------------------------------------------------------------------------------------------ batch building


def left_pad_windows(items: Tensor, starts: Tensor, ends: Tensor, length: int, trim: bool = False) -> Tensor:
    """The last ``length`` items of each slice ``items[start:end]``, left-padded with 0.

    Args:
        items: ``(T,)`` flat item tensor.
        starts: ``(B,)`` first position of each slice.
        ends: ``(B,)`` one past the last position (``ends >= starts``).
        length: Window length.
        trim: Pad only to the longest window of the batch (at least 1 column) instead of ``length``: the
            columns dropped are padding in every row.

    Returns:
        ``(B, length)`` int64 (fewer columns with ``trim``); row ``b`` ends with ``items[ends[b] - 1]``.
    """
    if trim and len(starts):
        length = max(1, min(length, int((ends - starts).max())))
    positions = ends[:, None] - length + torch.arange(length)[None, :]
    if not items.numel():
        return torch.zeros(positions.shape, dtype=torch.long)
    return torch.where(positions >= starts[:, None], items[positions.clamp(min=0)], 0)


def right_pad_slices(items: Tensor, starts: Tensor, ends: Tensor) -> Tensor:
    """Every slice ``items[start:end]`` in full, 0-padded on the right to the longest one (at least 1)."""
    width = max(int((ends - starts).max()) if len(starts) else 0, 1)
    positions = starts[:, None] + torch.arange(width)[None, :]
    if not items.numel():
        return torch.zeros(positions.shape, dtype=torch.long)
    return torch.where(positions < ends[:, None], items[positions.clamp(max=items.numel() - 1)], 0)


class _Indices(Dataset):
    """A dataset of sample indices ``0..n-1``; the collate functions gather the tensors."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


class TrainBatchCollate:
    """Turns a list of training-sample indices into ``{"items": (B, L + 1), "user": (B,)}``.

    Sample ``i`` is user ``users[i]`` whose training part is ``items[starts[i]:ends[i]]``. ``last`` windows
    take its most recent ``L + 1`` items (SASRec's official sampler); ``random`` windows end at a uniform
    position among those that leave a full window (the whole part when it is shorter); ``prefix`` windows
    end at a uniform position among all that leave at least one input and its target, i.e. a random prefix
    of the training part (RecBole's every-prefix augmentation, one prefix per user per epoch). Positions
    are drawn with torch's global generator (reproducible under ``seed_everything(workers=True)``).

    Args:
        items: ``(T,)`` flat items (the training parts possibly noisy).
        users: ``(N,)`` user index of each sample.
        starts: ``(N,)`` start of each training part.
        ends: ``(N,)`` end of each training part.
        length: Window length ``L + 1``.
        windows: ``last``, ``random`` or ``prefix``.
        trim: Pad each batch only to its longest window (see :func:`left_pad_windows`).
    """

    def __init__(
        self,
        items: Tensor,
        users: Tensor,
        starts: Tensor,
        ends: Tensor,
        length: int,
        windows: str,
        trim: bool = False,
    ) -> None:
        self.items, self.users, self.starts, self.ends = items, users, starts, ends
        self.length = length
        self.windows = windows
        self.trim = trim

    def __call__(self, indices: Sequence[int]) -> dict[str, Tensor]:
        """The batch of the samples ``indices``."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        starts, ends = self.starts[idx], self.ends[idx]
        if self.windows != "last":
            # How far the window end may move back: a random window stays full (or the whole part), a
            # prefix keeps at least one input and its target.
            if self.windows == "random":
                spare = (ends - starts - self.length).clamp(min=0)
            else:
                spare = ends - starts - MIN_TRAIN_ITEMS
            ends = ends - (torch.rand(len(idx)) * (spare + 1)).floor().long().clamp(max=spare)
        items = left_pad_windows(self.items, starts, ends, self.length, self.trim)
        return {"items": items, "user": self.users[idx]}


class EvalBatchCollate:
    """Turns a list of evaluation-sample indices into history / target / seen (/ candidates) batches.

    Sample ``i`` is user ``users[i]`` with history ``items[starts[i]:targets[i]]`` and target
    ``items[targets[i]]`` (0 when ``predict``: the history is the whole sequence).

    Args:
        items: ``(T,)`` flat items.
        users: ``(N,)`` user index of each sample.
        starts: ``(N,)`` first position of each history.
        targets: ``(N,)`` position of each target (= end of the history).
        length: History window length ``L``.
        predict: Targets are unknown (0).
        candidates: ``(N, C)`` target-first candidate lists (sampled ranking), or None.
        trim: Pad each batch only to its longest history (see :func:`left_pad_windows`).
    """

    def __init__(
        self,
        items: Tensor,
        users: Tensor,
        starts: Tensor,
        targets: Tensor,
        length: int,
        predict: bool = False,
        candidates: Tensor | None = None,
        trim: bool = False,
    ) -> None:
        self.items, self.users, self.starts, self.targets = items, users, starts, targets
        self.length = length
        self.trim = trim
        self.predict = predict
        self.candidates = candidates

    def __call__(self, indices: Sequence[int]) -> dict[str, Tensor]:
        """The batch of the samples ``indices``."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        starts, ends = self.starts[idx], self.targets[idx]
        batch = {
            "items": left_pad_windows(self.items, starts, ends, self.length, self.trim),
            "target": torch.zeros(len(idx), dtype=torch.long) if self.predict else self.items[ends],
            "user": self.users[idx],
            "seen": right_pad_slices(self.items, starts, ends),
        }
        if self.candidates is not None:
            batch["candidates"] = self.candidates[idx]
        return batch


def _history_keys(items: Tensor, starts: Tensor, targets: Tensor, width: int) -> Tensor:
    """Sorted ``row * width + item`` keys of every history item and target of each row."""
    lengths = targets - starts + 1  # the history and the target
    rows = torch.repeat_interleave(torch.arange(len(targets)), lengths)
    first = torch.repeat_interleave(starts - torch.cumsum(lengths, 0) + lengths, lengths)
    positions = first + torch.arange(int(lengths.sum()))
    return torch.sort(rows * width + items[positions]).values


def sample_negatives(
    items: Tensor,
    starts: Tensor,
    targets: Tensor,
    num_items: int,
    num_negatives: int,
    weights: Tensor | None = None,
    seed: int = 0,
    users: Sequence[str] | None = None,
) -> Tensor:
    """Target-first candidate lists: each target plus distinct negatives outside the user's history.

    Negatives are drawn without replacement among the items ``1..num_items`` that are neither in the
    history ``items[start:target]`` nor the target, uniformly (``weights`` None) or proportionally to
    ``weights`` (popularity: successive sampling, i.e. draw by weight, skip items already drawn or excluded),
    from a ``torch.Generator`` seeded with ``seed``: the same lists on every call, process and rank.

    Vectorised: every row draws ``4 * num_negatives`` items by weight at once and keeps, in draw order, the
    first ``num_negatives`` that are neither excluded nor repeated; the few rows left short (long histories,
    very skewed weights) are completed by an exact weighted draw without replacement over their eligible
    items.

    Args:
        items: ``(T,)`` flat items.
        starts: ``(N,)`` first position of each history.
        targets: ``(N,)`` position of each target.
        num_items: Catalogue size.
        num_negatives: Negatives per sample (``C - 1``).
        weights: ``(num_items + 1,)`` non-negative sampling weights (index 0 ignored), or None.
        seed: Generator seed.
        users: Raw user id of each sample, for error messages.

    Returns:
        ``(N, 1 + num_negatives)`` int64 ``[target, negatives...]``.

    Raises:
        ValueError: If a sample has fewer eligible negatives than ``num_negatives``.
    """
    generator = torch.Generator().manual_seed(seed)
    base = (
        torch.ones(num_items + 1, dtype=torch.float64) if weights is None else weights.double().clamp(min=0)
    )
    base = base.clone()
    base[0] = 0.0
    if int((base > 0).sum()) < num_negatives:
        raise ValueError(
            f"only {int((base > 0).sum())} items have a positive sampling weight, fewer than "
            f"num_negatives={num_negatives}; use ranking='full' or fewer negatives"
        )
    n, width = len(targets), num_items + 1
    out = torch.zeros(n, 1 + num_negatives, dtype=torch.long)
    out[:, 0] = items[targets]
    excluded = _history_keys(items, starts, targets, width)
    # Fast path: draws with replacement, keep the first valid distinct ones per row.
    k = 4 * num_negatives
    draws = torch.multinomial(base.float(), n * k, replacement=True, generator=generator).view(n, k)
    keys = torch.arange(n)[:, None] * width + draws
    found = torch.searchsorted(excluded, keys).clamp(max=len(excluded) - 1)
    valid = excluded[found] != keys
    ordered, order = torch.sort(draws, dim=1, stable=True)  # a repeat follows its first draw here
    repeated = torch.zeros_like(valid)
    repeated.scatter_(1, order[:, 1:], ordered[:, 1:] == ordered[:, :-1])
    valid &= ~repeated
    rank = torch.cumsum(valid.long(), dim=1)
    complete = rank[:, -1] >= num_negatives
    take = valid & (rank <= num_negatives) & complete[:, None]
    out[complete, 1:] = draws[take].view(-1, num_negatives)
    # Exact path for the rows left short.
    short = torch.nonzero(~complete).flatten()
    for lo in range(0, len(short), NEGATIVE_CHUNK):
        rows = short[lo : lo + NEGATIVE_CHUNK]
        w = base.float().expand(len(rows), -1).clone()
        keys = _history_keys(items, starts[rows], targets[rows], width)
        w.view(-1)[keys] = 0.0
        eligible = (w > 0).sum(1)
        if bool((eligible < num_negatives).any()):
            bad = int(torch.nonzero(eligible < num_negatives)[0])
            row = int(rows[bad])
            who = f"user {users[row]!r}" if users is not None else f"sample {row}"
            raise ValueError(
                f"{who} has only {int(eligible[bad])} items outside its history with a positive "
                f"sampling weight, fewer than num_negatives={num_negatives}; use ranking='full' or fewer"
                " negatives"
            )
        out[rows, 1:] = torch.multinomial(w, num_negatives, replacement=False, generator=generator)
    return out


# ------------------------------------------------------------------------------------------ datamodule


class SeqRecDataModule(pl.LightningDataModule):
    """Users' interaction sequences → leave-one-out (or time-ratio) next-item batches.

    ``setup`` reads ``path`` once (cached across stages), applies the preprocessing (``rating_threshold``,
    ``k_core``, ``min_user_interactions``; the report is logged), splits every user's time-ordered sequence
    into a training prefix, validation items and test items, and, with ``noise_prob > 0``, injects noise into
    the **training prefixes only**. Every evaluation sample's history is all the user's earlier items.

    * ``leave_one_out``: the last item is the test target (history: all earlier items, the validation item
      included), the second-last the validation target (history: the training prefix), the rest trains.
    * ``time_ratio``: one global time cut of all interactions by ``ratios`` (needs timestamps): a user's
      items before the first cut train, those between the cuts are validation targets, later ones test
      targets (one sample each, history = every earlier item of the user).

    Noise (robustness protocol): a fraction ``noise_prob`` of each training prefix's items is replaced by
    random items (seed ``noise_seed``). Validation and test **targets** stay clean; their **histories**
    contain the noisy training items, as a user's logged behaviour would, and the popularity counts
    (``item_counts``, pop100 negatives, the popularity baseline) are taken from the noisy training prefixes,
    i.e. from what a model trains on.

    Training samples: one per user whose training prefix holds at least 2 items (a single item has no
    next-item pair; shorter users are still evaluated). Evaluation samples need at least one history
    item (``time_ratio`` drops cold-start targets and counts them).

    Ranking: ``full`` ranks the whole catalogue (the task masks padding and, with ``mask_history``, the
    seen items); ``uni100`` / ``pop100`` give each validation and test sample ``num_negatives`` distinct
    negatives outside its history and target, drawn uniformly or by training popularity once per split
    with ``seed`` (identical across epochs, processes and DDP ranks).

    The sizes the model needs (``num_items``, ``max_len``, ``mask_history``) are linked by the CLI at
    instantiation: ``num_items`` reads and preprocesses the data on first access (the result is reused by
    ``setup``).

    Args:
        path: Interaction file (RecBole ``.inter``, one-line-per-user sequence file, MovieLens ``u.data`` /
            ``ratings.dat``, CSV), or a folder the reader resolves.
        format: File format; ``auto`` detects it from the name and content (see
            ``domains/recsys/readers.py``).
        user_col: CSV column (RecBole: header field) of the user id.
        item_col: CSV column (RecBole: header field) of the item id.
        rating_col: CSV column (RecBole: header field) of the rating; None: no ratings (``rating_threshold``
            is then an error).
        time_col: CSV column (RecBole: header field) of the timestamp; None: the file order is the time
            order (``time_ratio`` then needs timestamps and fails).
        delimiter: CSV field delimiter (other formats have fixed separators).
        rating_threshold: Keep only interactions rated at least this (None: keep all, implicit feedback).
        k_core: Iteratively drop users and items with fewer than k interactions (None: no k-core filter).
        min_user_interactions: Drop users with fewer interactions after filtering (3: one to train, one to
            validate, one to test under leave-one-out).
        max_len: History length L fed to the model (SASRec: 50 on Amazon, 200 on MovieLens-1M); training
            windows hold ``L + 1`` items.
        split: ``leave_one_out`` or ``time_ratio`` (see above).
        ratios: Train / validation / test fractions of all interactions for ``time_ratio`` (they sum to 1).
        noise_prob: Fraction of each training prefix's items replaced by random items (0: clean).
        noise_seed: Seed of the noise injection.
        ranking: ``full`` (all items), ``uni100`` (target + uniform negatives, SASRec's protocol) or
            ``pop100`` (negatives sampled by training popularity, BERT4Rec's protocol); ``num_negatives``
            sets their number. Prediction always ranks the full catalogue.
        num_negatives: Negatives per sample under sampled ranking (100 in both papers).
        mask_history: Whether full ranking excludes the items the user already interacted with (linked to
            the task; the batches always carry ``seen``).
        train_windows: ``last`` (one sample per user: the most recent ``L + 1`` training items, SASRec's
            official sampler), ``random`` (a random ``L + 1`` window of each longer prefix, redrawn every
            time a batch is built, i.e. every epoch) or ``prefix`` (the last ``L + 1`` items of a random
            prefix of at least 2 items, redrawn every epoch: for IGR-SR, which is supervised at the last
            position only, each epoch then trains on different targets instead of the same last one).
        pad_to: ``batch`` pads each batch only to its longest window (fast on short histories: Amazon users
            average 8.6 items against ``max_len=50``); ``max_len`` always pads to the full window. The
            models of this domain give identical results either way (SASRec's and IGR-SR's positions are
            right-aligned, BERT4Rec's count from the first item, a bias-free GRU stays 0 over padding);
            ``max_len`` is for a model whose positions count from the left edge of the window.
        predict_users: Raw user ids to recommend for (None: every user); an unknown id is an error.
        predict_file: Sequences to recommend for instead of the data's users: one line per sequence,
            ``name item1 item2 ...`` with raw item ids in time order (the S3-Rec format). An item outside
            the catalogue is an error naming the file, line and id.
        batch_size: Training batch size (SASRec: 128).
        eval_batch_size: Validation / test / prediction batch size.
        num_workers: DataLoader worker processes.
        seed: Seed of the negative sampling and of the training shuffle.
    """

    def __init__(
        self,
        path: str,
        format: Literal["auto", "recbole", "sequence", "ml100k", "ml1m", "csv"] = "auto",
        user_col: str = "user_id",
        item_col: str = "item_id",
        rating_col: str | None = "rating",
        time_col: str | None = "timestamp",
        delimiter: str = ",",
        rating_threshold: float | None = None,
        k_core: int | None = None,
        min_user_interactions: int = 3,
        max_len: int = 50,
        split: Literal["leave_one_out", "time_ratio"] = "leave_one_out",
        ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
        noise_prob: float = 0.0,
        noise_seed: int = 0,
        ranking: Literal["full", "uni100", "pop100"] = "full",
        num_negatives: int = 100,
        mask_history: bool = True,
        train_windows: Literal["last", "random", "prefix"] = "last",
        pad_to: Literal["batch", "max_len"] = "batch",
        predict_users: list[str] | None = None,
        predict_file: str | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        choices = {
            "format": (format, ("auto", "recbole", "sequence", "ml100k", "ml1m", "csv")),
            "split": (split, ("leave_one_out", "time_ratio")),
            "ranking": (ranking, ("full", "uni100", "pop100")),
            "train_windows": (train_windows, ("last", "random", "prefix")),
            "pad_to": (pad_to, ("batch", "max_len")),
        }
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if max_len < 1 or min_user_interactions < 1 or num_negatives < 1:
            raise ValueError(
                f"max_len ({max_len}), min_user_interactions ({min_user_interactions}) and num_negatives "
                f"({num_negatives}) must be >= 1"
            )
        if k_core is not None and k_core < 1:
            raise ValueError(f"k_core must be >= 1 or None, got {k_core}")
        if not 0.0 <= noise_prob < 1.0:
            raise ValueError(f"noise_prob must be in [0, 1), got {noise_prob}")
        ratios = tuple(float(r) for r in ratios)
        if len(ratios) != 3 or min(ratios) < 0 or ratios[0] <= 0 or abs(sum(ratios) - 1.0) > 1e-6:
            raise ValueError(
                f"ratios must be 3 non-negative fractions (train > 0) summing to 1, got {ratios}"
            )
        if batch_size < 1 or eval_batch_size < 1 or num_workers < 0:
            raise ValueError(
                f"batch_size ({batch_size}) and eval_batch_size ({eval_batch_size}) must be >= 1, "
                f"num_workers ({num_workers}) >= 0"
            )
        self.path = str(path)
        self.format = format
        self.csv_options = {
            "user_col": user_col,
            "item_col": item_col,
            "rating_col": rating_col,
            "time_col": time_col,
            "delimiter": delimiter,
        }
        self.rating_threshold = rating_threshold
        self.k_core = k_core
        self.min_user_interactions = min_user_interactions
        self._max_len = int(max_len)
        self.split = split
        self.ratios: tuple[float, float, float] = ratios  # type: ignore[assignment]
        self.noise_prob = float(noise_prob)
        self.noise_seed = noise_seed
        self.ranking = ranking
        self.num_negatives = num_negatives
        self._mask_history = bool(mask_history)
        self.train_windows = train_windows
        self.trim = pad_to == "batch"
        self.predict_users = None if predict_users is None else [str(u) for u in predict_users]
        self.predict_user_ids: list[str] | None = None  # names of the predict_file sequences, if any
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.seed = seed
        self._source: SequenceData | None = None  # in-memory data (from_sequences) or the preprocessed file
        self.preprocess_report: Any = None
        self._prepared = False
        self.clean_data: SequenceData | None = None
        self.data: SequenceData | None = None
        self.split_info: Split | None = None
        self._item_counts: Tensor | None = None
        self._collates: dict[str, TrainBatchCollate | EvalBatchCollate] = {}
        self._sizes: dict[str, int] = {}
        self._item_index: dict[str, int] | None = None

    @classmethod
    def from_sequences(cls, data: SequenceData, **kwargs: Any) -> "SeqRecDataModule":
        """A datamodule over in-memory sequences (no file is read; no preprocessing is applied).

        Args:
            data: The sequences (``SequenceData``).
            **kwargs: Any other ``__init__`` argument except ``path`` (``format`` etc. are ignored).

        Returns:
            The datamodule.
        """
        datamodule = cls(path="<in-memory SequenceData>", **kwargs)
        datamodule._source = data
        return datamodule

    # ------------------------------------------------------------------ properties linked into the model

    @property
    def num_items(self) -> int:
        """Catalogue size after preprocessing (reads and preprocesses the data on first access)."""
        return self._load().num_items

    @property
    def max_len(self) -> int:
        """History length L of the evaluation batches (training windows hold ``L + 1`` items)."""
        return self._max_len

    @property
    def mask_history(self) -> bool:
        """Whether full ranking excludes the user's seen items (linked into the task)."""
        return self._mask_history

    @property
    def item_counts(self) -> Tensor:
        """``(num_items + 1,)`` int64 interactions per item in the training prefixes (index 0, padding: 0)."""
        self._prepare()
        assert self._item_counts is not None
        return self._item_counts

    @property
    def user_ids(self) -> list[str]:
        """Raw id of each user index."""
        return self._load().user_ids

    @property
    def item_ids(self) -> list[str]:
        """Raw id of each item index (``item_ids[0]`` is the padding token)."""
        return self._load().item_ids

    @property
    def protocol_info(self) -> dict[str, Any]:
        """The evaluation protocol as a dict (split, ranking, history masking, noise, windows)."""
        info: dict[str, Any] = {"split": self.split}
        if self.split == "time_ratio":
            info["ratios"] = list(self.ratios)
        info["ranking"] = self.ranking
        if self.ranking != "full":
            info["negatives"] = f"{self.num_negatives} {self.ranking[:3]} outside history, seed {self.seed}"
        info.update(
            mask_history=self.mask_history,
            max_len=self.max_len,
            train_windows=self.train_windows,
            noise_prob=self.noise_prob,
        )
        if self.noise_prob > 0:
            info["noise"] = f"training prefixes only, seed {self.noise_seed}; targets clean"
        return info

    @property
    def protocol(self) -> str:
        """One-line summary of :attr:`protocol_info` (the task logs it)."""
        return ", ".join(f"{k}={v}" for k, v in self.protocol_info.items())

    # ------------------------------------------------------------------ raw ids

    def decode_items(self, indices: Tensor | Sequence[int]) -> list[str]:
        """Raw item ids of item indices.

        Args:
            indices: Item indices (any shape; flattened), 1..num_items (0 decodes to the padding token).

        Returns:
            The raw ids, in order.

        Raises:
            IndexError: If an index is outside ``0..num_items`` (the message names it).
        """
        item_ids = self.item_ids
        flat = torch.as_tensor(indices).reshape(-1).tolist()
        bad = [i for i in flat if not 0 <= int(i) < len(item_ids)]
        if bad:
            raise IndexError(
                f"item index {bad[0]} is outside 0..{len(item_ids) - 1} (num_items={self.num_items})"
            )
        return [item_ids[int(i)] for i in flat]

    def encode_items(self, raw_ids: Sequence[str]) -> Tensor:
        """Item indices of raw item ids.

        Args:
            raw_ids: Raw ids as in the data file.

        Returns:
            ``(len(raw_ids),)`` int64 indices.

        Raises:
            KeyError: If an id is not in the (preprocessed) catalogue; the message names it.
        """
        if self._item_index is None:
            self._item_index = {raw: i for i, raw in enumerate(self.item_ids) if i > 0}
        out = []
        for raw in raw_ids:
            index = self._item_index.get(str(raw))
            if index is None:
                raise KeyError(
                    f"unknown item id {raw!r}: it is not in the catalogue of {self.path} after preprocessing "
                    f"({self.num_items} items)"
                )
            out.append(index)
        return torch.tensor(out, dtype=torch.long)

    def encode_users(self, raw_ids: Sequence[str]) -> Tensor:
        """User indices of raw user ids; an unknown id raises ``KeyError`` naming it."""
        index = {raw: u for u, raw in enumerate(self.user_ids)}
        missing = [raw for raw in raw_ids if str(raw) not in index]
        if missing:
            raise KeyError(
                f"unknown user id {missing[0]!r}: not among the {len(index)} users of {self.path} after "
                "preprocessing (users with too few interactions are dropped)"
            )
        return torch.tensor([index[str(raw)] for raw in raw_ids], dtype=torch.long)

    # ------------------------------------------------------------------ setup

    def setup(self, stage: str | None = None) -> None:
        """Read, preprocess, split, add noise and build the samples (once; later calls reuse them).

        Args:
            stage: ``fit``, ``validate``, ``test``, ``predict`` or None (unused: every split is built at once,
                they share the reading and preprocessing).
        """
        if not self._prepared:
            self._prepare()
            rank_zero_info(self.describe())

    def _load(self) -> SequenceData:
        """The preprocessed, clean sequences (read on first call)."""
        if self._source is None:
            fmt = detect_format(self.path) if self.format == "auto" else self.format

            interactions = read_interactions(self.path, format=fmt, **self._reader_options(fmt))
            self._source, self.preprocess_report = build_sequences(
                interactions,
                rating_threshold=self.rating_threshold,
                k_core=self.k_core,
                min_user_interactions=self.min_user_interactions,
            )
            summary = self.preprocess_report.summary()
            rank_zero_info(f"{self.path}: {summary}")
        return self._source

    def _reader_options(self, fmt: str) -> dict[str, Any]:
        """The column options for the resolved format (CSV columns; RecBole header fields)."""
        if fmt == "csv":
            return dict(self.csv_options)
        if fmt == "recbole":
            o = self.csv_options
            return {
                "user_field": o["user_col"],
                "item_field": o["item_col"],
                "rating_field": o["rating_col"],
                "time_field": o["time_col"],
            }
        return {}

    def _prepare(self) -> None:
        if self._prepared:
            return
        clean = self._load()
        if self.split == "leave_one_out":
            split = leave_one_out(clean)
        else:
            split = time_ratio_split(clean, self.ratios)
        starts = clean.offsets[:-1]
        data = self._noisy(clean, split.train_end) if self.noise_prob > 0 else clean
        in_train = torch.arange(clean.num_interactions) < torch.repeat_interleave(
            split.train_end, clean.lengths
        )
        counts = torch.bincount(data.items[in_train], minlength=clean.num_items + 1)
        counts[0] = 0

        users = torch.arange(clean.num_users)
        keep = split.train_end - starts >= MIN_TRAIN_ITEMS
        self._collates = {
            "train": TrainBatchCollate(
                data.items,
                users[keep],
                starts[keep],
                split.train_end[keep],
                self.max_len + 1,
                self.train_windows,
                self.trim,
            )
        }
        evaluation = {
            "val": (split.val_users, split.val_positions),
            "test": (split.test_users, split.test_positions),
        }
        for name, (sample_users, targets) in evaluation.items():
            has_history = targets > starts[sample_users]  # a target without any earlier item is not scored
            sample_users, targets = sample_users[has_history], targets[has_history]
            candidates = None
            if self.ranking != "full":
                candidates = sample_negatives(
                    data.items,
                    starts[sample_users],
                    targets,
                    clean.num_items,
                    self.num_negatives,
                    weights=counts.float() if self.ranking == "pop100" else None,
                    seed=self.seed + (0 if name == "val" else 1),
                    users=[clean.user_ids[u] for u in sample_users.tolist()],
                )
            self._collates[name] = EvalBatchCollate(
                data.items,
                sample_users,
                starts[sample_users],
                targets,
                self.max_len,
                candidates=candidates,
                trim=self.trim,
            )
        if self.hparams.predict_file:
            self._collates["predict"] = self._predict_file_collate(self.hparams.predict_file)
        else:
            predict = users if self.predict_users is None else self.encode_users(self.predict_users)
            self._collates["predict"] = EvalBatchCollate(
                data.items,
                predict,
                starts[predict],
                clean.offsets[1:][predict],
                self.max_len,
                predict=True,
                trim=self.trim,
            )
        self.clean_data, self.data, self.split_info = clean, data, split
        self._item_counts = counts
        self._prepared = True

    def _predict_file_collate(self, path: str) -> EvalBatchCollate:
        """Prediction samples from a file of raw-id sequences (sample ``i`` = the file's ``i``-th line)."""
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"predict_file {path!r} does not exist")
        names: list[str] = []
        chunks: list[Tensor] = []
        for number, line in enumerate(file.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise ValueError(f"{file}:{number}: expected 'name item1 item2 ...', got {line!r}")
            try:
                chunks.append(self.encode_items(fields[1:]))
            except KeyError as err:
                raise KeyError(f"{file}:{number}: {err.args[0]}") from None
            names.append(fields[0])
        if not names:
            raise ValueError(f"{file}: no sequence to recommend for (the file is empty)")
        lengths = torch.tensor([len(c) for c in chunks])
        ends = torch.cumsum(lengths, 0)
        self.predict_user_ids = names
        return EvalBatchCollate(
            torch.cat(chunks),
            torch.arange(len(names)),
            ends - lengths,
            ends,
            self.max_len,
            predict=True,
            trim=self.trim,
        )

    def _noisy(self, clean: SequenceData, train_end: Tensor) -> SequenceData:
        """``clean`` with noise injected into the training prefixes only (validation / test items untouched).

        The prefixes are cut out, passed to :func:`~domains.recsys.preprocess.inject_noise` with
        ``protect_last=0`` (under leave-one-out this is the same as protecting the last two items) and put
        back, so the rule holds for any split.
        """
        n_train = train_end - clean.offsets[:-1]
        prefix_of = torch.arange(clean.num_interactions) < torch.repeat_interleave(train_end, clean.lengths)
        prefixes = SequenceData(
            items=clean.items[prefix_of],
            offsets=torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(n_train, 0)]),
            user_ids=clean.user_ids,
            item_ids=clean.item_ids,
        )
        noisy = inject_noise(prefixes, self.noise_prob, seed=self.noise_seed, protect_last=0)
        items = clean.items.clone()
        items[prefix_of] = noisy.items
        return SequenceData(items, clean.offsets, clean.user_ids, clean.item_ids, clean.timestamps)

    # ------------------------------------------------------------------ loaders

    def sample_count(self, split: SplitName) -> int:
        """Samples (users for train and predict, targets for val and test) of a split."""
        self._prepare()
        return len(self._collates[split].users)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training windows, one per user with at least 2 training items."""
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation targets in user order."""
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Test targets in user order."""
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """Every user (or ``predict_users``) with the whole sequence as history and target 0."""
        return self._loader("predict", shuffle=False)

    def _loader(self, split: SplitName, shuffle: bool) -> DataLoader:
        self._prepare()
        collate = self._collates[split]
        return DataLoader(
            _Indices(len(collate.users)),
            batch_size=self.batch_size if split == "train" else self.eval_batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=collate,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
        )

    # ------------------------------------------------------------------ summaries

    def describe(self) -> str:
        """Multi-line summary: data sizes, samples per split and the protocol."""
        lines = [repr(self)]
        if self._prepared and self.data is not None:
            d = self.data
            lines.append(
                f"  {d.num_users} users, {d.num_items} items, {d.num_interactions} interactions "
                f"(mean length {d.num_interactions / max(d.num_users, 1):.1f})"
            )
            skipped = d.num_users - self.sample_count("train")
            lines.append(
                f"  samples: train {self.sample_count('train')} users ({skipped} with < {MIN_TRAIN_ITEMS} "
                f"training items skipped), val {self.sample_count('val')}, test {self.sample_count('test')}, "
                f"predict {self.sample_count('predict')}"
            )
        lines.append(f"  protocol: {self.protocol}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(path={self.path!r}, format={self.format!r}, split={self.split!r}, "
            f"ranking={self.ranking!r}, max_len={self.max_len}, batch_size={self.batch_size})"
        )
