"""Simulate limit-order-book days and write them as exact LOBSTER message/orderbook files.

The simulator is attnlab's embedded, redistributable default data set (``make demo`` trains on it); the
real LOBSTER sample may not be redistributed. Run it as a script::

    python data/finance/simulate_lob.py --out DIR --days 3 --events 20000 --levels 10 --seed 0

or import it (``simulate_day``, ``write_lobster_day``, ``simulate_lobster_files``).

Model (event time, one event per step, on a price grid of ``tick`` = 100 = $0.01):

* **Latent order-flow regime.** A persistent Markov-switching state ``s ∈ {-1, 0, +1}`` (selling, neutral,
  buying pressure) that switches with probability ``1 / regime_mean_events`` per event to one of the other
  two states. It is never written out; it is what makes the future mid-price partly predictable.
* **Self-excitation (Hawkes-style).** Each market order adds ``hawkes_jump`` to an excitation of its side;
  both excitations decay by ``hawkes_decay`` per event. They raise the market-order share and the event
  rate, and tilt the side of the next market orders (order-flow clustering).
* **Pressure** ``p = regime_strength * s + hawkes_weight * (e_buy - e_sell)`` sets, through a logistic
  link ``σ(side_gain * p)``, the probability that a market order is a buy (it lifts the ask); a milder
  tilt (``limit_tilt``) shifts limit submissions towards the bid and cancellations towards the ask under
  buying pressure, and the reverse under selling pressure.
* **Queue-reactive book.** Cancellations run in proportion to the resting orders (so the book size stays
  stationary around ``target_orders`` per side) and hit the best level or an exponentially distributed
  level behind it. Limit orders improve a spread wider than one tick with a probability that grows with
  the spread, else join the best level or rest an exponential (sometimes uniform) number of ticks behind
  it. A side with fewer than ``levels + 2`` non-empty levels receives half of the limit orders, one with
  fewer than ``min_levels`` is refilled first: the book never empties and is never crossed. Market orders
  execute against the first order (FIFO) at the opposite best level; an emptied level moves the price.
* **Event times.** Exponential inter-event times at a rate ``∝ 1 + e_buy + e_sell``, rescaled to fill the
  trading window (09:30-16:00 by default).

The recent order flow (executions, cancellations, submissions) reveals the hidden regime with a lag, so
a model that sees a window of events beats chance clearly, but the regime switches and the noise keep the
task far from trivial (a logistic regression on 100-event windows reaches a test macro-F1 of about 0.5
at horizons 10/50/100 with TLOB labels, against 0.33 for chance).

Each day opens close to ``start_price`` (``open_noise``), so consecutive days trade at similar price
levels, as real days do; days are simulated independently from the seed ``(seed, day)``.

Event types written: 1 (submission), 2 (partial cancellation), 3 (deletion), 4 (visible execution). No
trading halts (type 7) and no hidden executions (type 5) are simulated. Every file is header-less and
follows the LOBSTER layout exactly: ``time,type,order_id,size,price,direction`` and ``4 * levels`` book
columns (ask price 1, ask size 1, bid price 1, bid size 1, ...), row *i* being the book after message
*i*; empty levels hold the dummy prices ±9999999999 with size 0.
"""

import argparse
import bisect
import datetime as dt
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "SimulatedDay",
    "SimulatorParams",
    "main",
    "simulate_day",
    "simulate_lobster_files",
    "write_lobster_day",
]

DUMMY_ASK = 9_999_999_999
DUMMY_BID = -9_999_999_999
OPEN_MS = 34_200_000  # 09:30
CLOSE_MS = 57_600_000  # 16:00
SUBMIT, PARTIAL_CANCEL, DELETE, EXECUTE = 1, 2, 3, 4


@dataclass(frozen=True)
class SimulatorParams:
    """Parameters of the order-flow model (all probabilities are per event).

    Attributes:
        tick: Tick size in LOBSTER price units (USD × 10000); 100 = $0.01.
        start_price: Mean opening mid-price (USD × 10000).
        open_noise: Log-normal spread of a day's opening price around ``start_price`` (0.003: about ±0.3 %,
            below the intraday range, so that consecutive days trade at similar levels as real days do).
        lot: Share lot; order sizes are multiples of it.
        max_lots: Limit-order sizes are ``lot × U{1..max_lots}``.
        p_market: Base weight of market orders (scaled by ``1 + e_buy + e_sell``).
        p_cancel: Base weight of cancellations (scaled by resting orders / ``2 * target_orders``, which
            keeps the book size stationary: queue-reactive).
        p_limit: Weight of limit-order submissions.
        target_orders: Resting orders per side at which cancellations run at their base weight.
        regime_mean_events: Mean sojourn (events) of the latent regime.
        regime_strength: Pressure contributed by the regime state ``s ∈ {-1, 0, 1}``.
        hawkes_jump: Excitation added by a market order to its side.
        hawkes_decay: Per-event decay factor of the excitations.
        hawkes_weight: Weight of the excitation imbalance in the pressure.
        side_gain: Logistic gain of the pressure on the side of market orders.
        limit_tilt: Fraction of the market-order tilt applied to the side of limit orders and
            cancellations (0: untilted, 1: as strong as for market orders).
        improve_prob: A limit order improves a spread of ``s > 1`` ticks with probability
            ``1 - (1 - improve_prob) ** (s - 1)``.
        join_prob: Probability that a non-improving limit order joins the best level.
        deep_prob: Probability that a limit order behind the best is placed uniformly up to ``max_depth``.
        mean_depth: Mean of the (exponential) placement depth in ticks behind the best level; also the mean
            level (from the best) targeted by a non-best cancellation.
        max_depth: Deepest placement, in ticks behind the best level.
        market_lots: Market-order size is ``lot × (1 + ⌊Exp · market_lots⌋)``, capped by the first order.
        best_cancel_prob: Probability that a cancellation targets the best level.
        partial_cancel_prob: Probability that a cancellation is partial (type 2) when the order has more
            than one lot.
        min_levels: A side with fewer non-empty levels is refilled by the next event (the book never
            empties); a side with fewer than ``levels + 2`` levels gets half of the limit orders.
        initial_levels: Non-empty levels per side in the (unrecorded) opening book.
        events_per_second: Mean event rate before the rescaling to the trading window.
    """

    tick: int = 100
    start_price: int = 1_000_000
    open_noise: float = 0.003
    lot: int = 100
    max_lots: int = 5
    p_market: float = 0.10
    p_cancel: float = 0.42
    p_limit: float = 0.48
    target_orders: int = 200
    regime_mean_events: float = 600.0
    regime_strength: float = 1.0
    hawkes_jump: float = 0.3
    hawkes_decay: float = 0.95
    hawkes_weight: float = 0.5
    side_gain: float = 1.5
    limit_tilt: float = 0.5
    improve_prob: float = 0.5
    join_prob: float = 0.35
    mean_depth: float = 2.5
    deep_prob: float = 0.2
    max_depth: int = 40
    market_lots: float = 2.0
    best_cancel_prob: float = 0.3
    partial_cancel_prob: float = 0.3
    min_levels: int = 3
    initial_levels: int = 25
    events_per_second: float = 1.0


@dataclass
class SimulatedDay:
    """One simulated day in LOBSTER units (N events).

    Attributes:
        date: Trading day (used in the file names).
        time: Seconds after midnight, float64, non-decreasing, rounded to 9 decimals.
        event_type: 1 submit, 2 partial cancel, 3 delete, 4 execution.
        order_id: Order ids (int64).
        size: Shares (int64).
        price: USD × 10000 (int64).
        direction: +1 buy / -1 sell side of the (resting) order.
        book: ``(N, 4 * levels)`` int64 book after each event.
        regime: Latent regime ``s`` at each event (-1, 0, 1); diagnostics only, not written to disk.
        start_ms: Start of the window, ms after midnight.
        end_ms: End of the window, ms after midnight.
    """

    date: dt.date
    time: np.ndarray
    event_type: np.ndarray
    order_id: np.ndarray
    size: np.ndarray
    price: np.ndarray
    direction: np.ndarray
    book: np.ndarray
    regime: np.ndarray
    start_ms: int = OPEN_MS
    end_ms: int = CLOSE_MS

    @property
    def levels(self) -> int:
        """Book levels per side."""
        return self.book.shape[1] // 4

    def file_stem(self, ticker: str = "SIM") -> str:
        """``TICKER_DATE_START_END`` part of the LOBSTER file names."""
        return f"{ticker}_{self.date.isoformat()}_{self.start_ms}_{self.end_ms}"


@dataclass
class _Side:
    """One side of the book: sorted non-empty prices, FIFO queues ``[order_id, size]`` and level totals."""

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.sign = 1 if is_bid else -1
        self.prices: list[int] = []  # ascending
        self.queues: dict[int, list[list[int]]] = {}
        self.totals: dict[int, int] = {}
        self.orders = 0

    def best(self) -> int:
        return self.prices[-1] if self.is_bid else self.prices[0]

    def level_price(self, j: int) -> int:
        return self.prices[-1 - j] if self.is_bid else self.prices[j]

    def add(self, price: int, order_id: int, size: int) -> None:
        queue = self.queues.get(price)
        if queue is None:
            bisect.insort(self.prices, price)
            self.queues[price] = [[order_id, size]]
            self.totals[price] = size
        else:
            queue.append([order_id, size])
            self.totals[price] += size
        self.orders += 1

    def reduce(self, price: int, index: int, size: int) -> None:
        """Remove ``size`` shares from order ``index`` of level ``price`` (the order goes when empty)."""
        queue = self.queues[price]
        queue[index][1] -= size
        self.totals[price] -= size
        if queue[index][1] == 0:
            del queue[index]
            self.orders -= 1
            if not queue:
                del self.queues[price]
                del self.totals[price]
                self.prices.pop(bisect.bisect_left(self.prices, price))

    def snapshot(self, levels: int, out: list[int], offset: int) -> None:
        """Write the top ``levels`` (price, size) pairs into ``out`` at stride 4 from ``offset``."""
        n = len(self.prices)
        dummy = DUMMY_BID if self.is_bid else DUMMY_ASK
        for j in range(levels):
            if j < n:
                price = self.prices[-1 - j] if self.is_bid else self.prices[j]
                out[offset + 4 * j] = price
                out[offset + 4 * j + 1] = self.totals[price]
            else:
                out[offset + 4 * j] = dummy
                out[offset + 4 * j + 1] = 0


Message = tuple[int, int, int, int, int]  # (type, order_id, size, price, direction)


class _Simulator:
    """The event loop of :func:`simulate_day` (state kept in plain Python objects for speed)."""

    def __init__(self, params: SimulatorParams, rng: np.random.Generator, levels: int) -> None:
        self.p = params
        self.rng = rng
        self.levels = levels
        self.ask = _Side(is_bid=False)
        self.bid = _Side(is_bid=True)
        self.next_id = 1_000_000 + int(rng.integers(0, 1_000_000))
        self.excite_buy = 0.0
        self.excite_sell = 0.0
        self.regime = int(rng.integers(-1, 2))
        self._open_book()

    def _new_id(self) -> int:
        self.next_id += int(self.rng.integers(1, 40))  # ids are increasing but not consecutive, as in LOBSTER
        return self.next_id

    def _lots(self, u: float) -> int:
        return self.p.lot * (1 + int(u * self.p.max_lots))

    def _open_book(self) -> None:
        p, tick = self.p, self.p.tick
        drift = math.exp(p.open_noise * self.rng.standard_normal())
        mid = round(p.start_price * drift / tick) * tick
        for j in range(p.initial_levels):
            for _ in range(int(self.rng.integers(1, 4))):
                self.ask.add(mid + (j + 1) * tick, self._new_id(), self._lots(self.rng.random()))
                self.bid.add(mid - (j + 1) * tick, self._new_id(), self._lots(self.rng.random()))

    def pressure(self) -> float:
        """Buying (> 0) or selling (< 0) pressure: regime plus Hawkes excitation imbalance."""
        return self.p.regime_strength * self.regime + self.p.hawkes_weight * (
            self.excite_buy - self.excite_sell
        )

    def step(self, u: list[float]) -> Message:
        """Advance one event with the uniforms ``u``; return ``(type, order_id, size, price, direction)``."""
        p = self.p
        if u[0] < 1.0 / p.regime_mean_events:
            self.regime = [s for s in (-1, 0, 1) if s != self.regime][int(u[1] < 0.5)]
        self.excite_buy *= p.hawkes_decay
        self.excite_sell *= p.hawkes_decay
        buy = 1.0 / (1.0 + math.exp(-p.side_gain * self.pressure()))  # P(buy side) of market orders
        tilted = 0.5 + p.limit_tilt * (buy - 0.5)  # milder tilt for limit orders and cancellations
        for side in (self.ask, self.bid):
            if len(side.prices) < p.min_levels:
                return self._submit(side, u, deep=True)
        market = p.p_market * (1.0 + self.excite_buy + self.excite_sell)
        cancel = p.p_cancel * (self.ask.orders + self.bid.orders) / (2.0 * p.target_orders)
        pick = u[2] * (market + cancel + p.p_limit)
        if pick < market:
            return self._market(self.ask if u[3] < buy else self.bid, u)
        if pick < market + cancel:
            # Queue-reactive: cancellations in proportion to the resting orders, tilted (buying pressure
            # thins the asks).
            ask_share = tilted * self.ask.orders
            ask_share /= ask_share + (1.0 - tilted) * self.bid.orders
            return self._cancel(self.ask if u[3] < ask_share else self.bid, u)
        thin = min(len(self.ask.prices), len(self.bid.prices)) < self.levels + 2
        if thin and u[9] < 0.5:
            side = self.ask if len(self.ask.prices) < len(self.bid.prices) else self.bid
            return self._submit(side, u, deep=True)
        return self._submit(self.bid if u[3] < tilted else self.ask, u, deep=False)

    def _submit(self, side: _Side, u: list[float], deep: bool) -> Message:
        p, tick, sign = self.p, self.p.tick, side.sign
        spread = (self.ask.best() - self.bid.best()) // tick
        if deep:
            depth = len(side.prices) + int(u[5] * p.mean_depth)
        elif spread > 1 and u[4] < 1.0 - (1.0 - p.improve_prob) ** (spread - 1):
            depth = -(1 + int(u[5] * (spread - 1) * 0.5))  # inside the spread, never crossing
        elif u[4] < p.join_prob:
            depth = 0
        elif u[7] < p.deep_prob:
            depth = 1 + int(u[5] * p.max_depth)
        else:
            depth = 1 + min(int(-math.log(1.0 - u[5]) * p.mean_depth), p.max_depth - 1)
        price = side.best() - sign * depth * tick
        size = self._lots(u[6])
        order_id = self._new_id()
        side.add(price, order_id, size)
        return SUBMIT, order_id, size, price, sign

    def _cancel(self, side: _Side, u: list[float]) -> Message:
        p = self.p
        if len(side.prices) <= p.min_levels:
            return self._submit(side, u, deep=True)
        n = len(side.prices)
        j = 0 if u[4] < p.best_cancel_prob else min(int(-math.log(1.0 - u[5]) * p.mean_depth), n - 1)
        price = side.level_price(j)
        queue = side.queues[price]
        index = int(u[6] * len(queue))
        order_id, size = queue[index]
        if size > p.lot and u[7] < p.partial_cancel_prob:
            cancelled = p.lot * (1 + int(u[8] * (size // p.lot - 1)))
            side.reduce(price, index, cancelled)
            return PARTIAL_CANCEL, order_id, cancelled, price, side.sign
        side.reduce(price, index, size)
        return DELETE, order_id, size, price, side.sign

    def _market(self, side: _Side, u: list[float]) -> Message:
        """A market order against ``side`` (asks for a buy): executes the first order at the best level."""
        p = self.p
        if len(side.prices) <= p.min_levels:
            return self._submit(side, u, deep=True)
        if side.is_bid:
            self.excite_sell += p.hawkes_jump
        else:
            self.excite_buy += p.hawkes_jump
        price = side.best()
        order_id, size = side.queues[price][0]
        executed = min(size, p.lot * (1 + int(-math.log(1.0 - u[8]) * p.market_lots)))
        side.reduce(price, 0, executed)
        return EXECUTE, order_id, executed, price, side.sign

    def rate(self) -> float:
        """Current event rate (events per second before rescaling)."""
        return self.p.events_per_second * (1.0 + self.excite_buy + self.excite_sell)


def simulate_day(
    n_events: int = 20_000,
    levels: int = 10,
    seed: int = 0,
    day: int = 0,
    date: dt.date | None = None,
    params: SimulatorParams | None = None,
    start_ms: int = OPEN_MS,
    end_ms: int = CLOSE_MS,
) -> SimulatedDay:
    """Simulate one trading day of ``n_events`` events.

    Args:
        n_events: Number of events (messages).
        levels: Book levels per side in the orderbook output.
        seed: Base seed; the day's generator is seeded with ``(seed, day)``, so days are independent and
            every day is reproducible on its own.
        day: Index of the day (changes the random stream and, by default, the date).
        date: Trading day; default ``2024-01-01 + day``.
        params: Model parameters (:class:`SimulatorParams` defaults when None).
        start_ms: Start of the trading window, ms after midnight.
        end_ms: End of the trading window, ms after midnight.

    Returns:
        The simulated day.

    Raises:
        ValueError: If ``n_events`` or ``levels`` is below 1 or the window is empty.
    """
    if n_events < 1 or levels < 1:
        raise ValueError(f"n_events and levels must be >= 1, got {n_events} and {levels}")
    if end_ms <= start_ms:
        raise ValueError(f"end_ms ({end_ms}) must be after start_ms ({start_ms})")
    params = params or SimulatorParams()
    rng = np.random.default_rng([seed, day])
    sim = _Simulator(params, rng, levels)
    uniforms = rng.random((n_events, 10)).tolist()
    exponentials = rng.standard_exponential(n_events).tolist()
    messages = np.empty((n_events, 5), dtype=np.int64)
    book = np.empty((n_events, 4 * levels), dtype=np.int64)
    regime = np.empty(n_events, dtype=np.int8)
    gaps = np.empty(n_events)
    row = [0] * (4 * levels)
    for i in range(n_events):
        gaps[i] = exponentials[i] / sim.rate()
        messages[i] = sim.step(uniforms[i])
        regime[i] = sim.regime
        sim.ask.snapshot(levels, row, 0)
        sim.bid.snapshot(levels, row, 2)
        book[i] = row
    return SimulatedDay(
        date=date or dt.date(2024, 1, 1) + dt.timedelta(days=day),
        time=_event_times(gaps, start_ms, end_ms),
        event_type=messages[:, 0].copy(),
        order_id=messages[:, 1].copy(),
        size=messages[:, 2].copy(),
        price=messages[:, 3].copy(),
        direction=messages[:, 4].copy(),
        book=book,
        regime=regime,
        start_ms=start_ms,
        end_ms=end_ms,
    )


def _event_times(gaps: np.ndarray, start_ms: int, end_ms: int) -> np.ndarray:
    """Cumulated gaps rescaled into ``(start, end)`` seconds, rounded to 9 decimals (non-decreasing)."""
    start, end = start_ms / 1000.0, end_ms / 1000.0
    cumulative = np.cumsum(gaps)
    times = start + (end - start) * cumulative / (cumulative[-1] + gaps.mean())
    return np.round(times, 9)


def write_lobster_day(day: SimulatedDay, out_dir: str | Path, ticker: str = "SIM") -> tuple[Path, Path]:
    """Write a simulated day as ``TICKER_DATE_START_END_{message,orderbook}_LEVELS.csv``.

    Args:
        day: The simulated day.
        out_dir: Destination folder (created if needed).
        ticker: Ticker in the file names.

    Returns:
        ``(message_path, orderbook_path)``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = day.file_stem(ticker)
    message_path = out / f"{stem}_message_{day.levels}.csv"
    orderbook_path = out / f"{stem}_orderbook_{day.levels}.csv"
    ints = np.column_stack([day.event_type, day.order_id, day.size, day.price, day.direction])
    lines = [
        f"{t:.9f},{a},{b},{c},{d},{e}\n"
        for t, (a, b, c, d, e) in zip(day.time.tolist(), ints.tolist(), strict=True)
    ]
    message_path.write_text("".join(lines))
    np.savetxt(orderbook_path, day.book, fmt="%d", delimiter=",")
    return message_path, orderbook_path


def simulate_lobster_files(
    out_dir: str | Path,
    days: int = 3,
    events: int = 20_000,
    levels: int = 10,
    seed: int = 0,
    ticker: str = "SIM",
    params: SimulatorParams | None = None,
) -> list[Path]:
    """Simulate ``days`` days and write them; return the message file paths in date order.

    Args:
        out_dir: Destination folder.
        days: Number of days (dates 2024-01-01, 2024-01-02, ...).
        events: Events per day.
        levels: Book levels.
        seed: Base seed.
        ticker: Ticker in the file names.
        params: Model parameters.

    Returns:
        The message file paths.
    """
    paths = []
    for d in range(days):
        sim = simulate_day(n_events=events, levels=levels, seed=seed, day=d, params=params)
        paths.append(write_lobster_day(sim, out_dir, ticker=ticker)[0])
    return paths


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        Exit status 0.
    """
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--days", type=int, default=3, help="number of days (default 3)")
    parser.add_argument("--events", type=int, default=20_000, help="events per day (default 20000)")
    parser.add_argument("--levels", type=int, default=10, help="book levels per side (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--ticker", default="SIM", help="ticker in the file names (default SIM)")
    args = parser.parse_args(argv)
    paths = simulate_lobster_files(args.out, args.days, args.events, args.levels, args.seed, args.ticker)
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
