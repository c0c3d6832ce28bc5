"""Simulate users' interaction sequences and write them as a RecBole atomic ``.inter`` file.

The simulator is attnlab's embedded, redistributable demo data set for sequential recommendation (the
MovieLens files may not be redistributed). Run it as a script::

    python data/recsys/simulate_sequences.py --out DIR --users 1000 --items 800 --seed 0

or import it (``SequenceSimParams``, ``simulate_sequences``, ``write_inter``, ``simulate_inter_file``).

Model (one user at a time, one interaction per step):

* **Intents.** The catalogue is cut into ``num_clusters`` item clusters (latent intents, e.g. genres).
  Every user holds 1 to ``max_intents`` of them with Dirichlet weights (a dominant one and side ones).
* **Sessions of intents.** The current intent persists with probability ``stay_prob`` per step, else a
  new one is drawn from the user's intent weights (it may be the same).
* **Markov transitions within a cluster.** Every item has ``successors`` successor items in its cluster
  (drawn by the cluster's popularity) with Dirichlet weights. With probability ``markov_prob`` the next
  item follows the successor distribution of the user's last item of the current intent; otherwise it is
  drawn from the cluster's popularity.
* **Popularity skew.** Item popularity within a cluster is Zipf-like (exponent ``zipf``), and clusters
  are unequally popular (exponent ``cluster_zipf``); with probability ``explore_prob`` a step ignores the
  intents and draws an item from the global popularity (off-intent noise).
* **No repeats.** A user never interacts with an item twice (as in MovieLens): an item already consumed
  is rejected and redrawn from the same distribution restricted to the unconsumed items.
* **Lengths, ratings, times.** Sequence lengths are ``min_len`` plus a negative-binomial count (mean
  ``mean_len``), capped at ``max_len``. Ratings are 1-5 stars, higher on the user's dominant intent.
  Each user starts at a uniform time in ``[start, start + span_days)`` and waits exponential gaps (mean
  ``mean_gap_hours``, at least one second) between interactions, so a user's timestamps strictly increase.

What a model can learn: the next item is mostly in the cluster of the recent items (intent), often a
successor of the last item of that cluster (order), and popular items are more likely (popularity). A
popularity ranking therefore reaches a small hit rate, while a sequence model (SASRec) that picks up the
intents and transitions beats it clearly.

Item ids are random 1..num_items tokens (the cluster structure is not visible in the ids); user ids are
1..num_users. The file lists all interactions in time order (like MovieLens, not grouped by user) with the
RecBole header ``user_id:token item_id:token rating:float timestamp:float`` (tab-separated), timestamps
in integer Unix seconds.
"""

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "HEADER",
    "SequenceSimParams",
    "SimulatedInteractions",
    "main",
    "simulate_inter_file",
    "simulate_sequences",
    "write_inter",
]

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"


@dataclass(frozen=True)
class SequenceSimParams:
    """Parameters of the sequence model.

    Attributes:
        num_clusters: Number of item clusters (latent intents); items are spread evenly over them.
        max_intents: A user holds 1 to ``max_intents`` intents (uniformly many).
        intent_concentration: Dirichlet concentration of a user's intent weights (small: one dominant).
        stay_prob: Probability that the current intent persists to the next step.
        markov_prob: Probability that the next item follows the successors of the last item of the
            current intent (else: the cluster's popularity).
        successors: Successor items per item (within its cluster).
        successor_concentration: Dirichlet concentration of the successor weights.
        explore_prob: Probability of an off-intent step drawn from the global popularity.
        zipf: Zipf exponent of item popularity within a cluster.
        cluster_zipf: Zipf exponent of cluster popularity (how often a cluster is a user's intent).
        mean_len: Mean sequence length (before the cap).
        min_len: Shortest sequence.
        max_len: Longest sequence (also capped at the catalogue size).
        len_dispersion: Negative-binomial shape of the lengths (small: heavy spread).
        start: Earliest start time, Unix seconds (default 2020-01-01).
        span_days: Users start uniformly within this many days.
        mean_gap_hours: Mean time between two interactions of a user.
    """

    num_clusters: int = 20
    max_intents: int = 3
    intent_concentration: float = 0.5
    stay_prob: float = 0.8
    markov_prob: float = 0.6
    successors: int = 3
    successor_concentration: float = 1.0
    explore_prob: float = 0.05
    zipf: float = 1.0
    cluster_zipf: float = 0.5
    mean_len: float = 50.0
    min_len: int = 5
    max_len: int = 300
    len_dispersion: float = 2.0
    start: int = 1_577_836_800
    span_days: float = 365.0
    mean_gap_hours: float = 24.0


@dataclass
class SimulatedInteractions:
    """Simulated interactions, one row each, in time order.

    Attributes:
        user: Raw user ids 1..num_users (int64).
        item: Raw item ids 1..num_items (int64, a random relabelling of the internal items).
        rating: Stars 1..5 (int64).
        timestamp: Unix seconds (int64); strictly increasing within a user.
        cluster: Internal cluster of each item (diagnostics, not written).
    """

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    cluster: np.ndarray

    def __len__(self) -> int:
        return len(self.user)


def _zipf_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Zipf weights ``1 / rank ** exponent`` in a random order, normalised."""
    weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    return rng.permutation(weights) / weights.sum()


def _draw(weights: np.ndarray, candidates: np.ndarray, consumed: np.ndarray, u: float) -> int:
    """Draw one of ``candidates`` by ``weights`` among the unconsumed ones; -1 when none is left."""
    w = np.where(consumed[candidates], 0.0, weights)
    total = w.sum()
    if total <= 0.0:
        return -1
    index = int(np.searchsorted(np.cumsum(w), u * total, side="right"))
    return int(candidates[min(index, len(candidates) - 1)])


def simulate_sequences(
    num_users: int = 1000,
    num_items: int = 800,
    seed: int = 0,
    params: SequenceSimParams | None = None,
) -> SimulatedInteractions:
    """Simulate the interaction sequences of ``num_users`` users over ``num_items`` items.

    Args:
        num_users: Number of users.
        num_items: Catalogue size.
        seed: Random seed; the output is a deterministic function of all arguments.
        params: Model parameters (:class:`SequenceSimParams` defaults when None).

    Returns:
        The interactions in time order (ties broken by user, then position).

    Raises:
        ValueError: If a size is below 1, or the catalogue is smaller than ``num_clusters`` or ``min_len``.
    """
    p = params or SequenceSimParams()
    if num_users < 1 or num_items < 1:
        raise ValueError(f"num_users and num_items must be >= 1, got {num_users} and {num_items}")
    if num_items < max(p.num_clusters, p.min_len):
        raise ValueError(
            f"num_items ({num_items}) must be >= num_clusters ({p.num_clusters}) and min_len ({p.min_len})"
        )
    if not 1 <= p.min_len <= p.max_len:
        raise ValueError(f"need 1 <= min_len ({p.min_len}) <= max_len ({p.max_len})")
    rng = np.random.default_rng(seed)

    # Catalogue: clusters, popularity, successors.
    cluster_of = rng.permutation(np.arange(num_items) % p.num_clusters)
    members = [np.flatnonzero(cluster_of == c) for c in range(p.num_clusters)]
    popularity = np.empty(num_items)
    for items in members:
        popularity[items] = _zipf_weights(len(items), p.zipf, rng)
    cluster_weight = _zipf_weights(p.num_clusters, p.cluster_zipf, rng)
    global_pop = popularity * cluster_weight[cluster_of]
    global_pop /= global_pop.sum()
    all_items = np.arange(num_items)
    succ_items: list[np.ndarray] = []
    succ_weights: list[np.ndarray] = []
    for i in range(num_items):
        others = members[cluster_of[i]]
        others = others[others != i]
        k = min(p.successors, len(others))
        if k == 0:
            succ_items.append(np.empty(0, dtype=np.int64))
            succ_weights.append(np.empty(0))
            continue
        w = popularity[others] / popularity[others].sum()
        succ_items.append(rng.choice(others, size=k, replace=False, p=w))
        succ_weights.append(rng.dirichlet(np.full(k, p.successor_concentration)))
    relabel = rng.permutation(num_items) + 1  # internal item -> raw id

    # Lengths and users' intents.
    cap = min(p.max_len, num_items)
    extra_mean = max(p.mean_len - p.min_len, 1e-9)
    extra = rng.negative_binomial(
        p.len_dispersion, p.len_dispersion / (p.len_dispersion + extra_mean), num_users
    )
    lengths = np.minimum(p.min_len + extra, cap)

    users, items, ratings, times = [], [], [], []
    for u in range(num_users):
        n = int(lengths[u])
        k = int(rng.integers(1, p.max_intents + 1))
        intents = rng.choice(p.num_clusters, size=k, replace=False, p=cluster_weight)
        weights = rng.dirichlet(np.full(k, p.intent_concentration))
        uniforms = rng.random((n, 5))
        consumed = np.zeros(num_items, dtype=bool)
        last_in: dict[int, int] = {}
        current = int(rng.choice(k, p=weights))
        seq = np.empty(n, dtype=np.int64)
        for t in range(n):
            u_stay, u_explore, u_markov, u_item, u_switch = uniforms[t]
            if t > 0 and u_stay >= p.stay_prob:
                current = int(np.searchsorted(np.cumsum(weights), u_switch * weights.sum(), side="right"))
                current = min(current, k - 1)
            cluster = int(intents[current])
            item = -1
            if u_explore < p.explore_prob:
                item = _draw(global_pop, all_items, consumed, u_item)
            elif u_markov < p.markov_prob and cluster in last_in:
                last = last_in[cluster]
                item = _draw(succ_weights[last], succ_items[last], consumed, u_item)
            if item < 0:
                item = _draw(popularity[members[cluster]], members[cluster], consumed, u_item)
            if item < 0:  # the intent's cluster is exhausted: fall back to the global popularity
                item = _draw(global_pop, all_items, consumed, u_item)
            consumed[item] = True
            last_in[int(cluster_of[item])] = item
            seq[t] = item
        dominant = cluster_of[seq] == intents[int(np.argmax(weights))]
        stars = 3.0 + 1.0 * dominant - 0.8 * (cluster_of[seq] != intents[:, None]).all(axis=0)
        stars = np.clip(np.rint(stars + rng.normal(0.0, 0.9, n)), 1, 5).astype(np.int64)
        gaps = np.maximum(rng.exponential(p.mean_gap_hours * 3600.0, n), 1.0).astype(np.int64)
        t0 = p.start + int(rng.random() * p.span_days * 86400.0)
        users.append(np.full(n, u + 1, dtype=np.int64))
        items.append(seq)
        ratings.append(stars)
        times.append(t0 + np.cumsum(gaps))

    user = np.concatenate(users)
    item = np.concatenate(items)
    timestamp = np.concatenate(times)
    order = np.lexsort((np.arange(len(user)), user, timestamp))
    return SimulatedInteractions(
        user=user[order],
        item=relabel[item[order]],
        rating=np.concatenate(ratings)[order],
        timestamp=timestamp[order],
        cluster=cluster_of[item[order]],
    )


def write_inter(data: SimulatedInteractions, path: str | Path) -> Path:
    """Write interactions as a RecBole atomic ``.inter`` file (tab-separated, typed header).

    Args:
        data: The interactions.
        path: Destination file (its folder is created if needed).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = np.column_stack([data.user, data.item, data.rating, data.timestamp]).tolist()
    lines = [HEADER + "\n", *(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows)]
    path.write_text("".join(lines))
    return path


def simulate_inter_file(
    out_dir: str | Path,
    name: str = "recsys-sim",
    num_users: int = 1000,
    num_items: int = 800,
    seed: int = 0,
    params: SequenceSimParams | None = None,
) -> Path:
    """Simulate and write ``out_dir/name.inter`` (the RecBole layout); return its path.

    Args:
        out_dir: Destination folder.
        name: Data set name (file stem).
        num_users: Number of users.
        num_items: Catalogue size.
        seed: Random seed.
        params: Model parameters.

    Returns:
        The ``.inter`` file path.
    """
    data = simulate_sequences(num_users=num_users, num_items=num_items, seed=seed, params=params)
    return write_inter(data, Path(out_dir) / f"{name}.inter")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        Exit status 0.
    """
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder (the file is OUT/NAME.inter)")
    parser.add_argument("--name", default="recsys-sim", help="data set name (default recsys-sim)")
    parser.add_argument("--users", type=int, default=1000, help="number of users (default 1000)")
    parser.add_argument("--items", type=int, default=800, help="catalogue size (default 800)")
    parser.add_argument("--mean-len", type=float, default=50.0, help="mean sequence length (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    params = SequenceSimParams(mean_len=args.mean_len)
    print(simulate_inter_file(args.out, args.name, args.users, args.items, args.seed, params))
    return 0


if __name__ == "__main__":
    sys.exit(main())
