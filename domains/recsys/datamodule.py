"""LightningDataModule for next-item recommendation from users' interaction sequences.

:class:`SeqRecDataModule` reads interactions (RecBole atomic files, one-line-per-user sequence files,
MovieLens ``u.data`` / ``ratings.dat``, CSV; :mod:`domains.recsys.readers`), preprocesses them once
(:mod:`domains.recsys.preprocess`), splits every user's sequence in time order and optionally adds noise to
the training part (:mod:`domains.recsys.splits`), and serves each split as a dataset of sample indices
whose collate function cuts the batches on the fly from the compact tensors
(:mod:`domains.recsys.batching`, where the batch layout is described).
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from core.data import BaseDataModule, Split
from core.utils import InputError
from domains.recsys.batching import (
    MIN_TRAIN_ITEMS,
    EvalBatchCollate,
    IndexDataset,
    TrainBatchCollate,
    sample_negatives,
)
from domains.recsys.data import SequenceData
from domains.recsys.preprocess import build_sequences
from domains.recsys.readers import (
    FORMATS,
    column_options,
    detect_format,
    read_interactions,
    read_named_sequences,
)
from domains.recsys.splits import (
    Samples,
    leave_one_out,
    noisy_training_prefixes,
    split_samples,
    time_ratio_split,
    training_item_counts,
)
from domains.recsys.splits import Split as SequenceSplit
from domains.recsys.tables import UnknownIdError

__all__ = ["SeqRecDataModule"]

IN_MEMORY = "<in-memory SequenceData>"
CHOICES = {
    "format": ("auto", *FORMATS),
    "duplicates": ("keep", "drop", "error"),
    "split": ("leave_one_out", "time_ratio"),
    "ranking": ("full", "uni100", "pop100"),
    "train_windows": ("last", "random", "prefix"),
    "pad_to": ("batch", "max_len"),
}


class SeqRecDataModule(BaseDataModule):
    """Users' interaction sequences → leave-one-out (or time-ratio) next-item batches.

    ``setup`` reads ``path`` once (shared by every split), preprocesses it (``rating_threshold``, ``k_core``,
    ``min_user_interactions``; the report is logged), splits every user's time-ordered sequence
    (``leave_one_out``: the last item is the test target, the second-last the validation target; or one
    global ``time_ratio`` cut) and, with ``noise_prob > 0``, replaces a share of the **training prefixes'**
    items by random ones (validation and test targets stay clean; their histories and the popularity
    counts see the noise, as a model does). Every evaluation sample's history is all the user's earlier
    items. One training sample per user with at least 2 training items, redrawn every epoch by
    ``train_windows``. Ranking is ``full`` (the whole catalogue) or sampled (``uni100`` / ``pop100``:
    ``num_negatives`` distinct negatives outside the history, drawn once per split with ``seed``, the same
    on every process). The protocol is described in ``docs/recsys/datamodule.md``.

    :attr:`links` gives the task ``num_items``, ``max_len`` and ``mask_history``; ``num_items`` reads and
    preprocesses the data on first access (the catalogue size is only known after filtering), and
    ``setup`` reuses the result.

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
        duplicates: Exact duplicate interactions (same user, item, timestamp and rating; checked when the
            data has timestamps): ``keep`` them with a ``DuplicateInteractionsWarning`` giving their count,
            ``drop`` them before any other filter, or refuse them (``error``).
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
        pin_memory: Page-locked batches for faster copies to a GPU; default: when CUDA is available.
        seed: Seed of the negative sampling and of the training shuffle.
    """

    links: ClassVar[dict[str, str]] = {
        "num_items": "num_items",
        "max_len": "max_len",
        "mask_history": "mask_history",
    }
    sample_name = "sequences"

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
        duplicates: Literal["keep", "drop", "error"] = "keep",
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
        pin_memory: bool | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, pin_memory)
        self.save_hyperparameters(ignore=["pin_memory"])  # resolved by the base (None -> CUDA available)
        given = {"format": format, "duplicates": duplicates, "split": split, "ranking": ranking}
        given |= {"train_windows": train_windows, "pad_to": pad_to}
        for name, value in given.items():
            if value not in CHOICES[name]:
                raise InputError(f"{name} must be one of {CHOICES[name]}, got {value!r}")
        if max_len < 1 or min_user_interactions < 1 or num_negatives < 1:
            raise InputError(
                f"max_len ({max_len}), min_user_interactions ({min_user_interactions}) and num_negatives "
                f"({num_negatives}) must be >= 1"
            )
        if k_core is not None and k_core < 1:
            raise InputError(f"k_core must be >= 1 or None, got {k_core}")
        if not 0.0 <= noise_prob < 1.0:
            raise InputError(f"noise_prob must be in [0, 1), got {noise_prob}")
        ratios = tuple(float(r) for r in ratios)
        if len(ratios) != 3 or min(ratios) < 0 or ratios[0] <= 0 or abs(sum(ratios) - 1.0) > 1e-6:
            raise InputError(
                f"ratios must be 3 non-negative fractions (train > 0) summing to 1, got {ratios}"
            )
        self.path = str(path)  # the reading and preprocessing options are read from self.hparams
        self.max_len = int(max_len)
        self.split = split
        self.ratios: tuple[float, float, float] = ratios  # type: ignore[assignment]
        self.noise_prob = float(noise_prob)
        self.noise_seed = noise_seed
        self.ranking = ranking
        self.num_negatives = num_negatives
        self.mask_history = bool(mask_history)
        self.train_windows = train_windows
        self.trim = pad_to == "batch"
        self.predict_users = None if predict_users is None else [str(u) for u in predict_users]
        self.predict_file = predict_file
        self.predict_user_ids: list[str] | None = None  # names of the predict_file sequences, if any
        self.seed = seed
        self.shuffle_seed = seed  # the base's training order (EpochRandomSampler) follows ``seed``
        self._source: SequenceData | None = None  # in-memory data (from_sequences) or the preprocessed file
        self.preprocess_report: Any = None
        self.clean_data: SequenceData | None = None
        self.data: SequenceData | None = None  # set by _prepare, with everything else it derives
        self.split_info: SequenceSplit | None = None
        self._item_counts: Tensor | None = None
        self._samples: dict[str, Samples] = {}
        self._collates: dict[Split, TrainBatchCollate | EvalBatchCollate] = {}

    @classmethod
    def from_sequences(cls, data: SequenceData, **kwargs: Any) -> "SeqRecDataModule":
        """A datamodule over in-memory sequences ``data`` (nothing is read or preprocessed).

        ``kwargs`` are any other ``__init__`` arguments except ``path`` (the reading options are ignored).
        """
        datamodule = cls(path=IN_MEMORY, **kwargs)
        datamodule._source = data
        return datamodule

    # ------------------------------------------------------------------ the BaseDataModule hooks

    def build_dataset(self, split: Split) -> IndexDataset | None:
        """The sample indices of ``split`` (the splits share one reading, split and noise: :meth:`_prepare`).

        A validation split without any target (``time_ratio`` with a validation ratio of 0) is None, so
        validation is skipped.
        """
        size = len(self._collate(split))
        return None if split == "val" and size == 0 else IndexDataset(size)

    def input_paths(self) -> list[Path]:
        """The interaction file (or folder) and the ``predict_file``, if any."""
        paths = [] if self.path == IN_MEMORY else [Path(self.path)]
        if self.predict_file:
            paths.append(Path(self.predict_file))
        return paths

    def loader_options(self, split: Split) -> dict[str, Any]:
        """The split's collate function (the training order is drawn from ``seed`` and the epoch)."""
        return {"collate_fn": self._collate(split)}

    # ------------------------------------------------------------------ data-derived values

    @property
    def num_items(self) -> int:
        """Catalogue size after preprocessing (reads and preprocesses the data on first access)."""
        return self._load().num_items

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
        """Raw item ids of item indices (:meth:`SequenceData.decode_items`)."""
        return self._load().decode_items(indices)

    def encode_items(self, raw_ids: Sequence[str]) -> Tensor:
        """Item indices of raw item ids; an unknown id raises ``KeyError`` naming it."""
        return self._load().encode_items(raw_ids)

    def encode_users(self, raw_ids: Sequence[str]) -> Tensor:
        """User indices of raw user ids; an unknown id raises ``KeyError`` naming it."""
        return self._load().encode_users(raw_ids)

    # ------------------------------------------------------------------ reading and preparing

    def _load(self) -> SequenceData:
        """The preprocessed, clean sequences (read on first call)."""
        if self._source is None:
            hp = self.hparams
            fmt = detect_format(self.path) if hp.format == "auto" else hp.format
            columns = {
                key: hp[key] for key in ("user_col", "item_col", "rating_col", "time_col", "delimiter")
            }
            interactions = read_interactions(self.path, format=fmt, **column_options(fmt, **columns))
            self._source, self.preprocess_report = build_sequences(
                interactions,
                rating_threshold=hp.rating_threshold,
                k_core=hp.k_core,
                min_user_interactions=hp.min_user_interactions,
                duplicates=hp.duplicates,
            )
            rank_zero_info(f"{self.path}: {self.preprocess_report.summary()}")
        return self._source

    def _prepare(self) -> None:
        """Split, add noise, count the training items and list every split's samples (once)."""
        if self.data is not None:
            return
        clean = self._load()
        if self.split == "leave_one_out":
            split = leave_one_out(clean)
        else:
            split = time_ratio_split(clean, self.ratios)
        data = clean
        if self.noise_prob > 0:
            data = noisy_training_prefixes(clean, split.train_end, self.noise_prob, seed=self.noise_seed)
        self._item_counts = training_item_counts(data, split.train_end)
        self._samples = split_samples(clean, split)
        self.clean_data, self.data, self.split_info = clean, data, split
        rank_zero_info(self.describe())

    def _collate(self, split: Split) -> TrainBatchCollate | EvalBatchCollate:
        """The collate function of ``split``, built on first use.

        So a stage builds only its own splits: ``fit`` neither reads ``predict_file`` nor draws the test
        negatives, ``test`` builds no training windows.
        """
        if split not in self._collates:
            self._prepare()
            self._collates[split] = self._build_collate(split)
        return self._collates[split]

    def _build_collate(self, split: Split) -> TrainBatchCollate | EvalBatchCollate:
        """The collate function of ``split`` over the prepared (possibly noisy) items."""
        assert self.data is not None and self._item_counts is not None
        data, samples = self.data, self._samples
        if split == "train":
            return TrainBatchCollate(
                data.items, *samples["train"], self.max_len + 1, self.train_windows, self.trim
            )
        if split == "predict":
            if self.predict_file:
                return self._predict_file_collate(self.predict_file)
            predict = samples["predict"]
            if self.predict_users is not None:
                try:
                    chosen = self.encode_users(self.predict_users)
                except KeyError as err:
                    raise UnknownIdError(f"data.predict_users: {err.args[0]}") from None
                predict = Samples(*(t[chosen] for t in predict))
            return EvalBatchCollate(data.items, *predict, self.max_len, predict=True, trim=self.trim)
        users, starts, targets = samples[split]
        candidates = None
        if self.ranking != "full":
            candidates = sample_negatives(
                data.items,
                starts,
                targets,
                data.num_items,
                self.num_negatives,
                weights=self._item_counts.float() if self.ranking == "pop100" else None,
                seed=self.seed + (0 if split == "val" else 1),
                users=[data.user_ids[u] for u in users.tolist()],
            )
        return EvalBatchCollate(
            data.items, users, starts, targets, self.max_len, candidates=candidates, trim=self.trim
        )

    def _predict_file_collate(self, path: str) -> EvalBatchCollate:
        """Prediction samples from a file of raw-id sequences, one per sequence, in file order."""
        chunks: list[Tensor] = []
        sequences = read_named_sequences(path)
        for number, _, raw_items in sequences:
            try:
                chunks.append(self.encode_items(raw_items))
            except KeyError as err:
                raise UnknownIdError(f"{path}:{number}: {err.args[0]}") from None
        self.predict_user_ids = [name for _, name, _ in sequences]
        lengths = torch.tensor([len(c) for c in chunks])
        ends = torch.cumsum(lengths, 0)
        samples = torch.arange(len(chunks))
        return EvalBatchCollate(
            torch.cat(chunks), samples, ends - lengths, ends, self.max_len, predict=True, trim=self.trim
        )

    # ------------------------------------------------------------------ summaries

    def sample_count(self, split: Split) -> int:
        """Samples (users for train and predict, targets for val and test) of a split."""
        return len(self._collate(split))

    def describe(self) -> str:
        """Multi-line summary: data sizes, training and evaluation samples, and the protocol.

        The prediction samples are counted by :meth:`summary` once that split is set up.
        """
        lines = [repr(self)]
        if self.data is not None:
            d, n = self.data, {split: len(samples.users) for split, samples in self._samples.items()}
            lines.append(
                f"  {d.num_users} users, {d.num_items} items, {d.num_interactions} interactions; samples: "
                f"train {n['train']} ({d.num_users - n['train']} users with < {MIN_TRAIN_ITEMS} training "
                f"items skipped), val {n['val']}, test {n['test']}"
            )
        return "\n".join([*lines, f"  protocol: {self.protocol}"])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(path={self.path!r}, format={self.hparams.format!r}, "
            f"split={self.split!r}, ranking={self.ranking!r}, max_len={self.max_len}, "
            f"batch_size={self.batch_size})"
        )
