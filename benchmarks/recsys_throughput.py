"""SASRec wall time to a quality target: ours (Lightning task) against RecBole 1.2.1, in one run.

Both sides train SASRec with the same hyperparameters on the same interactions, evaluate the same
protocol after every epoch, and are timed in their own subprocess (so each peak RSS is its own):

* **RecBole** (``recbole==1.2.1``, its ``Trainer.fit``): every prefix of every training sequence is a
  separate sample (RecBole's sequential data augmentation), cross-entropy on the last position,
  ``train_batch_size`` samples per step (RecBole's default 2048; ``--recbole-batch``).
* **Ours** (:class:`~domains.recsys.SeqRecDataModule` + :class:`~domains.recsys.SequentialRecommendation`
  + a Lightning ``Trainer``): one ``max_len + 1`` window per user, cross-entropy at every position (the
  same next-item targets per epoch, computed in one pass per user), 128 users per step.

Shared settings: hidden 64, 2 blocks, 1 head, dropout 0.2, FFN width = hidden with ReLU (our SASRec
follows the official code; RecBole is set to the same ``inner_size``/``hidden_act``), history length 200
(RecBole ``MAX_ITEM_LIST_LENGTH``), Adam lr 1e-3, full-catalogue CE. Protocol: leave-one-out (RecBole
``eval_args: {split: {LS: valid_and_test}, order: TO, mode: full}``), full ranking over all items with the
user's history masked, validation NDCG@10 after every epoch. No checkpoints are written on either side.

Procedure: RecBole trains until its early stopping (``--recbole-stopping-step`` epochs without
improvement, RecBole's default 10) or the budget; its best validation NDCG@10 becomes the **target**.
Ours then trains, evaluating every epoch, and stops at the first epoch whose validation NDCG@10 is
``>= target`` (or after ``--patience`` epochs without improvement, or the budget). Reported: time to
the target (``setup + epochs``, from the start of data loading to the end of the validation that reached
it; interpreter and library imports excluded), mean train and validation time per epoch, peak RSS of each
process (``ru_maxrss``) and its peak above the post-import baseline (``VmHWM`` after
``/proc/self/clear_refs``), and the ratios ours / RecBole. The issue's goal is ``time ratio <= 0.2``.

Fallback: if RecBole cannot be imported or fails, the script prints why and times a plain PyTorch
reference instead (``--reference plain``): our SASRec ``nn.Module`` trained on RecBole-style expanded
prefixes (one sample per prefix, CE on the last position, ``--recbole-batch`` samples per step, Adam
with PyTorch's default betas), evaluated exactly like ours.

RecBole 1.2.1 against current NumPy / torch: :func:`patch_recbole_compat` (applied in the RecBole
subprocess before ``import recbole``) restores the NumPy aliases NumPy 2 removed (``np.float_``,
``np.complex_``, ``np.unicode_``; RecBole's own ``Config.compatibility_settings`` reads them) and the
builtin-type aliases removed in NumPy 1.24 (``np.float``, ``np.int``, ``np.bool``, ...). The benchmark
never imports ``recbole.quick_start`` (it imports ``ray``, which needs ``pkg_resources``), calls
``Trainer.fit(saved=False)`` and never ``evaluate(load_best_model=True)`` (``torch.load`` defaults to
``weights_only=True`` since torch 2.6 and RecBole's checkpoints hold a ``Config``). The project itself is
not patched. Set-up of the separate environment: ``benchmarks/recsys_setup.md``.

Run (full comparison; ~1 h on 2 CPU cores, RecBole alone ~107 s per epoch)::

    .venv-bench/bin/python -m benchmarks.recsys_throughput --data ../shared/data/recsys/ml-100k

Smoke test (1 epoch each on the first 60 users, history length 50; a few minutes on a busy 2-core box)::

    .venv-bench/bin/python -m benchmarks.recsys_throughput --smoke

Results: stdout and ``<out>/recsys_throughput.json`` (``<out>/recbole.json``, ``ours.json``, the
subprocess logs); ``--recbole-result <out>/recbole.json`` reuses a finished RecBole run.
"""

import argparse
import json
import logging
import math
import os
import resource
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.memory import reset_peak_rss, status_bytes

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = "../shared/data/recsys/ml-100k"
DEFAULT_OUT = "runs/bench/recsys_throughput"
GOAL_RATIO = 0.2  # the issue: ours reaches RecBole's quality in <= 1/5 of its wall time
SMOKE_USERS = 60
SMOKE_MAX_LEN = 50
SIDES = ("ours", "recbole", "plain")

__all__ = [
    "EpochRecord",
    "SideResult",
    "build_parser",
    "main",
    "patch_recbole_compat",
    "run_ours",
    "run_plain",
    "run_recbole",
    "subset_inter_file",
]

# NumPy aliases RecBole 1.2.1 uses: removed in NumPy 1.24 (builtin aliases) and 2.0 (underscore aliases).
_NUMPY_ALIASES: dict[str, str] = {
    "float_": "float64",
    "complex_": "complex128",
    "unicode_": "str_",
    "float": "float64",
    "int": "int_",
    "bool": "bool_",
    "complex": "complex128",
    "object": "object_",
    "str": "str_",
    "long": "int_",
    "unicode": "str_",
}


def patch_recbole_compat() -> list[str]:
    """Make RecBole 1.2.1 importable and runnable with NumPy 2 (call before ``import recbole``).

    Sets each alias of ``_NUMPY_ALIASES`` on ``numpy`` **only when it is missing** (a no-op on NumPy
    versions that still have them, and idempotent).

    Returns:
        The names that were added, e.g. ``["float_", "complex_", ...]`` (empty when nothing was missing).
    """
    import warnings

    import numpy as np

    added = []
    for alias, target in _NUMPY_ALIASES.items():
        with warnings.catch_warnings():  # NumPy 2 warns on some removed names before raising
            warnings.simplefilter("ignore")
            try:
                getattr(np, alias)
            except AttributeError:
                setattr(np, alias, getattr(np, target))
                added.append(alias)
    return added


def patch_recbole_fill_nan() -> None:
    """Make RecBole's missing-value imputation work under pandas' copy-on-write (pandas >= 3).

    RecBole 1.2.1's ``Dataset._fill_nan`` calls ``feat[field].fillna(..., inplace=True)``, which under
    copy-on-write fills a temporary copy and leaves the frame unchanged (pandas warns
    ``ChainedAssignmentError``). The replacement assigns the filled column back, with the same fill values
    (0 for token fields, the column mean for float fields, an empty array for sequence fields), and only
    touches columns that hold missing values. Call after NumPy is patched; imports RecBole.
    """
    import numpy as np
    from recbole.data.dataset import Dataset
    from recbole.utils import FeatureType

    def _fill_nan(self: Any) -> None:
        for feat_name in self.feat_name_list:
            feat = getattr(self, feat_name)
            for name in feat:
                column = feat[name]
                if not column.isna().any():
                    continue
                ftype = self.field2type[name]
                if ftype == FeatureType.TOKEN:
                    feat[name] = column.astype(object).fillna(value=0)
                elif ftype == FeatureType.FLOAT:
                    feat[name] = column.fillna(value=column.mean())
                else:
                    dtype = np.int64 if ftype == FeatureType.TOKEN_SEQ else np.float64
                    feat[name] = column.apply(
                        lambda x, d=dtype: np.array([], dtype=d) if isinstance(x, float) else x
                    )

    Dataset._fill_nan = _fill_nan


# ------------------------------------------------------------------------------------------ results


@dataclass
class EpochRecord:
    """One epoch of one side: its train and validation time, elapsed time since setup start, NDCG@10."""

    epoch: int
    train_s: float
    eval_s: float
    elapsed_s: float
    val_ndcg10: float


@dataclass
class SideResult:
    """What one side's subprocess reports."""

    name: str
    setup_s: float = 0.0
    epochs: list[EpochRecord] = field(default_factory=list)
    stopped: str = ""
    peak_rss_mib: float | None = None
    peak_above_base_mib: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def best(self) -> float:
        """Best validation NDCG@10 (NaN without epochs)."""
        return max((e.val_ndcg10 for e in self.epochs), default=math.nan)

    def time_to(self, target: float) -> tuple[float, int] | None:
        """``(elapsed seconds, epoch)`` of the first epoch with NDCG@10 ``>= target``, or None."""
        for e in self.epochs:
            if e.val_ndcg10 >= target - 1e-12:
                return e.elapsed_s, e.epoch
        return None

    def mean(self, key: str) -> float:
        """Mean ``train_s`` or ``eval_s`` over the epochs (NaN without epochs)."""
        values = [getattr(e, key) for e in self.epochs]
        return sum(values) / len(values) if values else math.nan

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SideResult":
        """Inverse of ``dataclasses.asdict``."""
        d = dict(d)
        d["epochs"] = [EpochRecord(**e) for e in d.get("epochs", [])]
        return cls(**d)


class _Stop(Exception):
    """Raised inside RecBole's epoch callback to end ``fit`` (target or budget)."""


class _Budget:
    """Decides after each epoch whether a side stops: target reached, plateau, epoch or time budget."""

    def __init__(self, spec: dict[str, Any], result: SideResult, start: float) -> None:
        self.spec, self.result, self.start = spec, result, start
        self.best, self.since_best = -math.inf, 0

    def record(self, train_s: float, eval_s: float, ndcg: float) -> str:
        """Append the epoch; return why to stop (empty string: go on)."""
        r = self.result
        elapsed = time.perf_counter() - self.start
        r.epochs.append(EpochRecord(len(r.epochs), train_s, eval_s, elapsed, float(ndcg)))
        print(
            f"[{r.name}] epoch {len(r.epochs) - 1}: train {train_s:.1f}s, eval {eval_s:.1f}s, "
            f"val NDCG@10 {ndcg:.4f}, elapsed {elapsed:.1f}s",
            file=sys.stderr,
            flush=True,
        )
        if ndcg > self.best:
            self.best, self.since_best = ndcg, 0
        else:
            self.since_best += 1
        target = self.spec.get("target")
        if target is not None and ndcg >= target - 1e-12:
            return f"target {target:.4f} reached"
        if self.since_best >= self.spec["patience"]:
            return f"no improvement for {self.spec['patience']} epochs"
        if len(r.epochs) >= self.spec["epochs"]:
            return f"epoch budget ({self.spec['epochs']})"
        if elapsed >= 60 * self.spec["max_minutes"]:
            return f"time budget ({self.spec['max_minutes']} min)"
        return ""


# ------------------------------------------------------------------------------------------ memory


def _fill_memory(result: SideResult, base: int | None) -> None:
    result.peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    hwm = status_bytes("VmHWM")
    if base is not None and hwm is not None:
        result.peak_above_base_mib = max(hwm - base, 0) / 2**20


# ------------------------------------------------------------------------------------------ data


def resolve_data(path: str | Path) -> Path:
    """The ``.inter`` file of a RecBole dataset folder (``<dir>/<dir name>.inter``) or the file itself.

    Raises:
        FileNotFoundError: Naming the path when no such file exists.
    """
    p = Path(path)
    inter = p / f"{p.name}.inter" if p.is_dir() else p
    if not inter.is_file() or inter.suffix != ".inter":
        raise FileNotFoundError(
            f"{path}: expected a RecBole dataset folder holding <name>/<name>.inter or a .inter file "
            "(ml-100k ships beside the repo in ../shared/data/recsys/ml-100k; it is not redistributable)"
        )
    return inter


def subset_inter_file(inter: Path, users: int, out_dir: Path) -> Path:
    """Write the interactions of the first ``users`` user ids (in file order of first appearance).

    The copy goes to ``out_dir/<name>-u<users>/<name>-u<users>.inter`` (never into the data folder) so
    that RecBole, which reads ``<data_path>/<dataset>/<dataset>.inter``, can load it too.

    Returns:
        The written file.
    """
    lines = inter.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    keep: set[str] = set()
    out_rows = []
    for line in rows:
        user = line.split("\t", 1)[0]
        if user not in keep and len(keep) < users:
            keep.add(user)
        if user in keep:
            out_rows.append(line)
    name = f"{inter.stem}-u{users}"
    target = out_dir / name / f"{name}.inter"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join([header, *out_rows]) + "\n")
    return target


# ------------------------------------------------------------------------------------------ our side


def _build_datamodule(spec: dict[str, Any]) -> Any:
    from domains.recsys import SeqRecDataModule

    return SeqRecDataModule(
        path=spec["inter"],
        format="recbole",
        max_len=spec["max_len"],
        split="leave_one_out",
        ranking="full",
        mask_history=True,
        batch_size=spec["batch"],
        eval_batch_size=spec["eval_batch"],
        seed=spec["seed"],
    )


def _build_task(spec: dict[str, Any], num_items: int) -> Any:
    from functools import partial

    from domains.recsys import SequentialRecommendation
    from domains.recsys.models import SASRec

    network = partial(
        SASRec,
        hidden_dim=spec["hidden"],
        num_layers=spec["layers"],
        num_heads=spec["heads"],
        dropout=spec["dropout"],
    )
    return SequentialRecommendation(
        network=network,
        loss="ce",
        ks=[10],
        num_items=num_items,
        max_len=spec["max_len"],
        mask_history=True,
    )


def run_ours(spec: dict[str, Any]) -> SideResult:
    """Train our SASRec with Lightning, validating every epoch, until the target or the budget.

    Args:
        spec: The run settings (see :func:`_spec`); ``target`` may be None (then it runs to the budget).

    Returns:
        The timings, validation NDCG@10 per epoch and sizes (memory is filled in by the worker).
    """
    import lightning.pytorch as pl
    import torch

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    result = SideResult("ours")
    start = time.perf_counter()
    pl.seed_everything(spec["seed"], workers=True, verbose=False)
    datamodule = _build_datamodule(spec)
    datamodule.setup("fit")
    task = _build_task(spec, datamodule.num_items)
    lr, betas = spec["lr"], tuple(spec["betas"])
    task.configure_optimizers = lambda: torch.optim.Adam(task.parameters(), lr=lr, betas=betas)
    budget = _Budget(spec, result, start)

    class _Timer(pl.Callback):
        def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            self.t0 = time.perf_counter()

        def on_validation_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            self.t1 = time.perf_counter()

        def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            t2 = time.perf_counter()
            ndcg = float(trainer.callback_metrics["val_ndcg@10"])
            why = budget.record(self.t1 - self.t0, t2 - self.t1, ndcg)
            if why:
                result.stopped = why
                trainer.should_stop = True

    trainer = pl.Trainer(
        accelerator=spec["device"],
        devices=1,
        max_epochs=spec["epochs"],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[_Timer()],
        default_root_dir=spec["workdir"],
    )
    result.setup_s = time.perf_counter() - start  # the model is built inside fit; counted in epoch 0
    trainer.fit(task, datamodule=datamodule)
    result.stopped = result.stopped or "max_epochs"
    result.info = {
        "users": datamodule.clean_data.num_users,
        "items": datamodule.num_items,
        "interactions": datamodule.clean_data.num_interactions,
        "train_samples": datamodule.sample_count("train"),
        "steps_per_epoch": math.ceil(datamodule.sample_count("train") / spec["batch"]),
        "parameters": sum(p.numel() for p in task.parameters()),
        "optimizer": f"Adam(lr={lr}, betas={betas})",
    }
    return result


# ------------------------------------------------------------------------------------------ plain reference


def run_plain(spec: dict[str, Any]) -> SideResult:
    """Plain PyTorch reference with RecBole-style prefix expansion (the fallback when RecBole is absent).

    Every training item after a user's first is a sample (history: up to ``max_len`` earlier items,
    target: the item), shuffled each epoch, ``recbole_batch`` samples per Adam step (PyTorch default
    betas, as RecBole), CE on the last position only. Same model, data and evaluation as ours.
    """
    import torch
    import torch.nn.functional as F

    from domains.recsys.batching import left_pad_windows
    from domains.recsys.metrics import RankingMetrics
    from domains.recsys.ranking import full_ranking_scores, target_rank

    result = SideResult("plain")
    start = time.perf_counter()
    torch.manual_seed(spec["seed"])
    datamodule = _build_datamodule(spec)
    datamodule.setup("fit")
    data, split = datamodule.data, datamodule.split_info
    starts = data.offsets[:-1]
    counts = (split.train_end - starts - 1).clamp(min=0)  # targets per user: all training items but the 1st
    user_of = torch.repeat_interleave(torch.arange(len(counts)), counts)
    first = torch.repeat_interleave(starts + 1 - torch.cumsum(counts, 0) + counts, counts)
    positions = first + torch.arange(int(counts.sum()))  # flat position of every target
    sample_starts = starts[user_of]
    network = _build_task(spec, datamodule.num_items).network
    optimizer = torch.optim.Adam(network.parameters(), lr=spec["lr"])
    budget = _Budget(spec, result, start)
    result.setup_s = time.perf_counter() - start
    n, batch, length = len(positions), spec["recbole_batch"], spec["max_len"]
    for _ in range(spec["epochs"]):
        t0 = time.perf_counter()
        network.train()
        for idx in torch.randperm(n).split(batch):
            items = left_pad_windows(data.items, sample_starts[idx], positions[idx], length)
            logits = network.scores(network.user_vector(items))
            logits[:, 0] = -math.inf
            loss = F.cross_entropy(logits, data.items[positions[idx]])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        t1 = time.perf_counter()
        network.eval()
        metrics = RankingMetrics([10])
        with torch.no_grad():
            for b in datamodule.val_dataloader():
                scores = network.scores(network.user_vector(b["items"])).float()
                metrics.update(target_rank(full_ranking_scores(scores, b["seen"], b["target"]), b["target"]))
        ndcg = float(metrics.compute()["ndcg@10"])
        why = budget.record(t1 - t0, time.perf_counter() - t1, ndcg)
        if why:
            result.stopped = why
            break
    result.stopped = result.stopped or "epochs"
    result.info = {
        "train_samples": n,
        "steps_per_epoch": math.ceil(n / batch),
        "parameters": sum(p.numel() for p in network.parameters()),
        "optimizer": f"Adam(lr={spec['lr']})",
    }
    return result


# ------------------------------------------------------------------------------------------ RecBole side


def recbole_config(spec: dict[str, Any]) -> dict[str, Any]:
    """RecBole's config dict for the same model, data and protocol as ours."""
    inter = Path(spec["inter"])
    return {
        "data_path": str(inter.parent.parent.resolve()),
        "dataset": inter.stem,
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": spec["max_len"],
        "n_layers": spec["layers"],
        "n_heads": spec["heads"],
        "hidden_size": spec["hidden"],
        "inner_size": spec["hidden"],  # ours: FFN of width d (official SASRec); RecBole's default is 256
        "hidden_act": "relu",  # ours (official SASRec); RecBole's default is gelu
        "hidden_dropout_prob": spec["dropout"],
        "attn_dropout_prob": spec["dropout"],
        "loss_type": "CE",
        "train_neg_sample_args": None,
        "learning_rate": spec["lr"],
        "train_batch_size": spec["recbole_batch"],
        "eval_batch_size": spec["eval_batch"],
        "epochs": spec["epochs"],
        "stopping_step": spec["patience"],
        "eval_step": 1,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["NDCG", "Hit", "MRR"],
        "topk": [10],
        "valid_metric": "NDCG@10",
        "seed": spec["seed"],
        "reproducibility": True,
        "use_gpu": spec["device"] == "cuda",
        "gpu_id": "0" if spec["device"] == "cuda" else "",
        "checkpoint_dir": str(Path(spec["workdir"]) / "saved"),
        "show_progress": False,
        "save_dataset": False,
        "save_dataloaders": False,
        "log_wandb": False,
        "worker": 0,
    }


def run_recbole(spec: dict[str, Any]) -> SideResult:
    """Train RecBole's SASRec with its ``Trainer.fit`` (no checkpoint), timing each epoch.

    Stops at RecBole's own early stopping, the epoch budget or the time budget (``_Stop`` raised from
    ``fit``'s callback), or at ``target`` when one is given.
    """
    added = patch_recbole_compat()
    patch_recbole_fill_nan()
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    result = SideResult("recbole", info={"numpy_aliases_added": added})
    start = time.perf_counter()
    config = Config(model="SASRec", config_dict=recbole_config(spec))
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, _test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = SASRec(config, train_data.dataset).to(config["device"])
    trainer = Trainer(config, model)
    budget = _Budget(spec, result, start)
    times: dict[str, float] = {}
    train_epoch, valid_epoch = trainer._train_epoch, trainer._valid_epoch

    def timed_train(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = train_epoch(*args, **kwargs)
        times["train"] = time.perf_counter() - t0
        return out

    def timed_valid(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = valid_epoch(*args, **kwargs)
        times["eval"] = time.perf_counter() - t0
        return out

    def callback(epoch_idx: int, valid_score: float) -> None:
        why = budget.record(times["train"], times["eval"], valid_score)
        if why:
            result.stopped = why
            raise _Stop(why)

    trainer._train_epoch, trainer._valid_epoch = timed_train, timed_valid
    result.setup_s = time.perf_counter() - start
    try:
        trainer.fit(train_data, valid_data, verbose=False, saved=False, callback_fn=callback)
    except _Stop:
        pass
    if not result.stopped:  # fit returned: RecBole's early stopping or its epochs
        result.stopped = (
            f"RecBole early stopping ({spec['patience']} epochs)" if budget.since_best else "epochs"
        )
    result.info |= {
        "users": int(dataset.user_num) - 1,
        "items": int(dataset.item_num) - 1,
        "interactions": int(dataset.inter_num),
        "train_samples": len(train_data.dataset),
        "steps_per_epoch": math.ceil(len(train_data.dataset) / spec["recbole_batch"]),
        "parameters": sum(p.numel() for p in model.parameters()),
        "optimizer": f"Adam(lr={spec['lr']}) (RecBole learner)",
        "torch": torch.__version__,
    }
    return result


# ------------------------------------------------------------------------------------------ subprocesses

RUNNERS: dict[str, Callable[[dict[str, Any]], SideResult]] = {
    "ours": run_ours,
    "recbole": run_recbole,
    "plain": run_plain,
}


def _worker(side: str, spec_path: Path, result_path: Path) -> int:
    """Subprocess entry: run one side, write its :class:`SideResult` as JSON."""
    import torch

    spec = json.loads(spec_path.read_text())
    torch.set_num_threads(spec["threads"])
    base = reset_peak_rss()
    try:
        result = RUNNERS[side](spec)
    except Exception as error:  # reported to the parent, which prints it and may fall back
        result = SideResult(side, error=f"{type(error).__name__}: {error}\n{traceback.format_exc()}")
    _fill_memory(result, base)
    result.info["threads"] = torch.get_num_threads()
    result_path.write_text(json.dumps(asdict(result), indent=2))
    return 0 if not result.error else 1


def _run_side(side: str, spec: dict[str, Any], python: str, out: Path) -> SideResult:
    """Run one side in a subprocess of ``python`` (cwd: a scratch folder under ``out``)."""
    workdir = out / f"{side}_work"
    workdir.mkdir(parents=True, exist_ok=True)
    spec = dict(spec, workdir=str(workdir.resolve()))
    spec_path, result_path, log_path = out / f"{side}_spec.json", out / f"{side}.json", out / f"{side}.log"
    spec_path.write_text(json.dumps(spec, indent=2))
    result_path.unlink(missing_ok=True)
    cmd = [python, "-m", "benchmarks.recsys_throughput", "--worker", side]
    cmd += ["--spec", str(spec_path.resolve()), "--result", str(result_path.resolve())]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env["OMP_NUM_THREADS"] = str(spec["threads"])
    print(f"--- {side}: {' '.join(cmd)}  (log: {log_path})", flush=True)
    with log_path.open("w") as log:
        proc = subprocess.run(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    for line in log_path.read_text().splitlines():
        if line.startswith(f"[{side}] "):
            print("   ", line, flush=True)
    if result_path.is_file():
        return SideResult.from_dict(json.loads(result_path.read_text()))
    tail = "\n".join(log_path.read_text().splitlines()[-30:])
    return SideResult(side, error=f"subprocess exited with {proc.returncode} without a result:\n{tail}")


def recbole_available(python: str) -> str:
    """Empty string when ``python`` can import RecBole (after the patch), else the reason."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from benchmarks.recsys_throughput import "
        "patch_recbole_compat as p; p(); import recbole.config, recbole.data, recbole.trainer; "
        "from recbole.model.sequential_recommender import SASRec; print(recbole.__version__)"
    )
    try:
        proc = subprocess.run(
            [python, "-c", code, str(REPO)], capture_output=True, text=True, check=False, timeout=300
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{python}: {error}"
    if proc.returncode:
        return f"{python} cannot import RecBole: {proc.stderr.strip().splitlines()[-1:]}"
    version = proc.stdout.strip()
    if version != "1.2.1":
        print(f"warning: RecBole {version} found; this benchmark was written for 1.2.1", flush=True)
    return ""


# ------------------------------------------------------------------------------------------ CLI


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.recsys_throughput",
        description="SASRec wall time to RecBole's best validation NDCG@10: ours vs RecBole 1.2.1.",
    )
    p.add_argument("--data", default=DEFAULT_DATA, help="RecBole dataset folder or .inter file")
    p.add_argument("--out", default=DEFAULT_OUT, help="output folder (JSON, logs, scratch)")
    p.add_argument("--smoke", action="store_true", help=f"1 epoch each on the first {SMOKE_USERS} users")
    p.add_argument("--users", type=int, default=None, help="use only the first N users (a copy in --out)")
    p.add_argument("--epochs", type=int, default=100, help="epoch budget of each side")
    p.add_argument("--max-minutes", type=float, default=90.0, help="wall-time budget of each side")
    p.add_argument("--patience", type=int, default=10, help="epochs without improvement before stopping")
    p.add_argument(
        "--reference",
        choices=("auto", "recbole", "plain"),
        default="auto",
        help="auto: RecBole, or the plain PyTorch reference if RecBole is missing or fails",
    )
    p.add_argument("--recbole-python", default=None, help="interpreter with RecBole (default: this one)")
    p.add_argument("--recbole-result", default=None, help="reuse a finished reference run's JSON")
    p.add_argument("--target", type=float, default=None, help="skip the reference: use this NDCG@10")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads per side (default: cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-len", type=int, default=None, help="history length (default 200; smoke 50)")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--betas", type=float, nargs=2, default=(0.9, 0.98), help="our Adam betas (config)")
    p.add_argument("--batch", type=int, default=128, help="our batch (users per step)")
    p.add_argument("--recbole-batch", type=int, default=2048, help="RecBole train_batch_size (prefixes)")
    p.add_argument("--eval-batch", type=int, default=256, help="evaluation batch (users) on both sides")
    p.add_argument("--worker", choices=SIDES, default=None, help=argparse.SUPPRESS)
    p.add_argument("--spec", default=None, help=argparse.SUPPRESS)
    p.add_argument("--result", default=None, help=argparse.SUPPRESS)
    return p


def _spec(args: argparse.Namespace, inter: Path) -> dict[str, Any]:
    keys = ("max_len", "hidden", "layers", "heads", "dropout", "lr", "batch", "recbole_batch", "eval_batch")
    spec = {k: getattr(args, k) for k in keys}
    spec |= {
        "inter": str(inter.resolve()),
        "betas": list(args.betas),
        "epochs": args.epochs,
        "max_minutes": args.max_minutes,
        "patience": args.patience,
        "device": args.device,
        "threads": args.threads or os.cpu_count() or 1,
        "seed": args.seed,
        "target": None,
    }
    return spec


def _fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}{unit}"


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def report(ours: SideResult, ref: SideResult | None, target: float) -> dict[str, Any]:
    """Print the comparison table; return it as a dict."""
    name = ref.name if ref is not None else "given target"
    ours_hit = ours.time_to(target)
    ref_hit = ref.time_to(target) if ref is not None else None
    rows = [("side", "ours", name)]

    def row(label: str, a: Any, b: Any) -> None:
        rows.append((label, a, b))

    def side_time(hit: tuple[float, int] | None, r: SideResult | None) -> str:
        if r is None:
            return "-"
        return f"{hit[0]:.1f}s (epoch {hit[1]})" if hit else f"not reached (best {r.best:.4f})"

    row("best val NDCG@10", _fmt(ours.best, digits=4), _fmt(ref.best if ref else None, digits=4))
    row(f"time to NDCG@10 >= {target:.4f}", side_time(ours_hit, ours), side_time(ref_hit, ref))
    row("setup (data + model)", _fmt(ours.setup_s, "s"), _fmt(ref.setup_s if ref else None, "s"))
    row(
        "train time / epoch", _fmt(ours.mean("train_s"), "s"), _fmt(ref.mean("train_s") if ref else None, "s")
    )
    row("val time / epoch", _fmt(ours.mean("eval_s"), "s"), _fmt(ref.mean("eval_s") if ref else None, "s"))
    row("epochs run", str(len(ours.epochs)), str(len(ref.epochs)) if ref else "-")
    row(
        "peak RSS (process)",
        _fmt(ours.peak_rss_mib, " MiB", 0),
        _fmt(ref.peak_rss_mib if ref else None, " MiB", 0),
    )
    row(
        "peak RSS above imports",
        _fmt(ours.peak_above_base_mib, " MiB", 0),
        _fmt(ref.peak_above_base_mib if ref else None, " MiB", 0),
    )
    for key in ("train_samples", "steps_per_epoch", "parameters"):
        row(key, str(ours.info.get(key, "-")), str(ref.info.get(key, "-")) if ref else "-")
    row("stopped", ours.stopped, ref.stopped if ref else "-")
    width = [max(len(str(r[i])) for r in rows) for i in range(3)]
    for i, r in enumerate(rows):
        print(" | ".join(str(c).ljust(w) for c, w in zip(r, width, strict=True)))
        if i == 0:
            print("-+-".join("-" * w for w in width))
    ratios = {
        "time_to_target": _ratio(ours_hit[0] if ours_hit else None, ref_hit[0] if ref_hit else None),
        "train_epoch": _ratio(ours.mean("train_s"), ref.mean("train_s") if ref else None),
        "val_epoch": _ratio(ours.mean("eval_s"), ref.mean("eval_s") if ref else None),
        "peak_rss": _ratio(ours.peak_rss_mib, ref.peak_rss_mib if ref else None),
        "peak_above_base": _ratio(ours.peak_above_base_mib, ref.peak_above_base_mib if ref else None),
    }
    print("\nratios ours / " + name + ": " + ", ".join(f"{k} {_fmt(v, '', 3)}" for k, v in ratios.items()))
    verdict = "not measured"
    if ratios["time_to_target"] is not None:
        ok = ratios["time_to_target"] <= GOAL_RATIO
        verdict = f"{'MET' if ok else 'NOT met'} ({ratios['time_to_target']:.3f} vs <= {GOAL_RATIO})"
    elif ref is not None and ours_hit is None:
        verdict = "NOT met: ours did not reach the target within its budget"
    print(f"goal (ours reaches the reference's best validation NDCG@10 in <= 1/5 of its time): {verdict}")
    return {"target": target, "ratios": ratios, "goal": verdict}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison (or, with ``--worker``, one side); return the exit status."""
    args = build_parser().parse_args(argv)
    if args.worker:
        if not args.spec or not args.result:
            raise SystemExit("--worker needs --spec and --result")
        return _worker(args.worker, Path(args.spec), Path(args.result))
    if args.smoke:
        args.epochs, args.users = 1, args.users or SMOKE_USERS
        args.max_minutes = min(args.max_minutes, 10.0)
        args.max_len = args.max_len or SMOKE_MAX_LEN
    args.max_len = args.max_len or 200
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    inter = resolve_data(args.data)
    if args.users:
        inter = subset_inter_file(inter, args.users, out / "data")
    spec = _spec(args, inter)
    print(
        f"recsys throughput: data {inter}, device {args.device}, {spec['threads']} threads, "
        f"python {sys.executable}\nshared: hidden {args.hidden}, layers {args.layers}, heads {args.heads}, "
        f"dropout {args.dropout}, max_len {args.max_len}, lr {args.lr}, CE, leave-one-out, full ranking, "
        f"history masked, val NDCG@10 every epoch\nours: batch {args.batch} users, Adam betas "
        f"{tuple(args.betas)}; reference: batch {args.recbole_batch} prefixes; budget {args.epochs} epochs / "
        f"{args.max_minutes} min per side, patience {args.patience}",
        flush=True,
    )
    ref: SideResult | None = None
    if args.recbole_result:
        ref = SideResult.from_dict(json.loads(Path(args.recbole_result).read_text()))
        print(f"reusing {args.recbole_result} ({ref.name}, best {ref.best:.4f})")
    elif args.target is None:
        ref = _reference(args, spec, out)
    if args.target is not None:
        target = args.target
    elif ref is not None and ref.epochs:
        target = ref.best
    else:
        print("no reference result: ours runs to its budget without a target", flush=True)
        target = math.nan
    ours = _run_side("ours", dict(spec, target=None if math.isnan(target) else target), sys.executable, out)
    if ours.error:
        print(f"ours failed:\n{ours.error}", flush=True)
        return 1
    print()
    summary = report(ours, ref, target if not math.isnan(target) else ours.best)
    payload = {
        "spec": spec,
        "ours": asdict(ours),
        "reference": asdict(ref) if ref else None,
        **summary,
    }
    (out / "recsys_throughput.json").write_text(json.dumps(payload, indent=2))
    print(f"\nwritten: {out / 'recsys_throughput.json'}")
    return 0


def _reference(args: argparse.Namespace, spec: dict[str, Any], out: Path) -> SideResult | None:
    """Run RecBole, falling back to the plain PyTorch reference (printing why) when allowed."""
    if args.reference in ("auto", "recbole"):
        python = args.recbole_python or sys.executable
        reason = recbole_available(python)
        if not reason:
            ref = _run_side("recbole", spec, python, out)
            if not ref.error and ref.epochs:
                return ref
            reason = f"RecBole run failed: {ref.error or 'no epoch finished'}"
        print(f"RecBole unavailable: {reason}", flush=True)
        if args.reference == "recbole":
            return None
        print("falling back to the plain PyTorch prefix-expansion reference", flush=True)
    ref = _run_side("plain", spec, sys.executable, out)
    if ref.error:
        print(f"plain reference failed:\n{ref.error}", flush=True)
        return None
    return ref


if __name__ == "__main__":
    sys.exit(main())
