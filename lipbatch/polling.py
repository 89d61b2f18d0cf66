"""When to poll a running task next: a completion-time model learned from finished jobs, and the schedule.

Why: kinds that report neither progress nor an ETA (Magic Hour, PixVerse via AI/ML API) were polled
blind (3 s, then x1.5 up to 30 s), so a 20 s job was noticed at 24.4 s. The jobs of one account and
kind take about the same time per second of input, so finished jobs predict the next one: poll
sparsely (never faster than the provider's documented cadence) until just before the earliest
plausible finish, then densely through a short window around the prediction.

What a finished job teaches is an *interval*: the task was still unfinished ``low`` seconds after
its create was accepted and finished by ``high`` (the poll that saw it). The first, blind jobs give
wide intervals; the model locates the duration where most intervals overlap (for a fixed duration,
their intersection), so each window's dense polls narrow the next job's interval. Jobs running side
by side in the wave after the blind one offset their grids (``CompletionModel.phase``, while more jobs
wait for a slot), so their intervals intersect in a fraction of a step instead of all being the same.

Times: the model, the table and the constants are seconds at ``time_scale`` 1 (like ``RunOptions``);
``PollSchedule`` reads the runner's clock (``trio.current_time()``) and returns real seconds, so the
sandbox's scaled clock works. Provider ETAs are real seconds, as the runner treats them.
"""

from __future__ import annotations

import contextlib
import math
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lipbatch.errors import LipbatchError
from lipbatch.providers.base import Phase, TaskState

if TYPE_CHECKING:
    from lipbatch.state.backend import StateBackend

#: Seconds between two polls of one task that each provider documents (the lower end of a range).
#: Sources: /work/shared/providers/<kind>.md. Polls come faster only in the window around a
#: predicted finish.
GUIDANCE: dict[str, float] = {
    "runway-lipsync": 10.0,  # useapi's example polls every 20 s; "10-20 s is reasonable"
    "runway-act-two-voice": 10.0,  # "Suggested cadence 10-20 s (useapi's client: 20 s)"
    "magichour-lipsync": 5.0,  # "Poll every 5-15 s (the SDK's 0.5 s default is too aggressive)"
    "aimlapi-pixverse-lipsync": 15.0,  # "Docs poll every 15 s with a 1000 s timeout"
    "creatify-lipsync": 10.0,  # no documented cadence: the others' common 10 s (our pick)
}
DEFAULT_GUIDANCE = 10.0

#: Floor between two polls inside the window. Magic Hour's own SDK polls every 0.5 s for a whole
#: job; we do it for at most MAX_WINDOW_POLLS polls, and a real round trip (0.1-0.3 s) still fits.
MIN_INTERVAL = 0.5
LAG_TARGET = 0.025  # dense spacing as a fraction of the prediction: 2.5 % lag, 0.5 % left for round trips
MAX_WINDOW_POLLS = 6  # a wide (young) prediction widens the spacing instead of adding polls
CHECK_IN_AFTER = 120.0  # a window further off gets one check-in halfway (an early failure frees the slot)
SPREAD_K = 2.5  # window edges at K robust standard deviations of the precise samples
EARLY_FLOOR, LATE_FLOOR = 0.03, 0.08  # the window reaches at least 3 % before, 8 % after the prediction
PRECISE = 2 * LAG_TARGET  # intervals this narrow (two dense steps) measure the jitter between jobs
HISTORY = 16  # samples kept per (account, kind): one outlier is under 10 %; recent enough to follow drift
BACKOFF_FACTOR = 1.5
STAGGER_UNTIL = 3  # samples: jobs predicted from this few (the wave after the blind one) stagger their grids
LEARNED_NAME = "timings"  # the state's side record of job durations (``StateBackend.learned``)
GOLDEN = (math.sqrt(5) - 1) / 2  # phases k * GOLDEN mod 1 spread evenly however many jobs run at once


def guidance(kind: str) -> float:
    """The documented seconds between polls of one task for ``kind``."""
    return GUIDANCE.get(kind, DEFAULT_GUIDANCE)


@dataclass(frozen=True)
class Sample:
    """One finished job: unfinished at ``low``, finished by ``high`` (seconds after acceptance)."""

    low: float
    high: float
    input_seconds: float | None = None


@dataclass(frozen=True)
class Prediction:
    """A job's accepted->succeeded seconds (time_scale 1): central estimate and plausible range."""

    seconds: float
    earliest: float
    latest: float
    samples: int
    settled: bool = False  # two or more jobs were bracketed within two dense steps

    @property
    def spread(self) -> float:
        """Half the plausible range: the uncertainty, in seconds."""
        return (self.latest - self.earliest) / 2


class CompletionModel:
    """Durations of finished jobs per (account, kind); JSON-able so earlier runs teach later ones."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, str], list[Sample]] = {}
        self._fits: dict[tuple[str, str, bool], _Fit] = {}  # until the next record of the series
        self._phases: Counter[tuple[str, str]] = Counter()
        self._new: list[tuple[str, str, Sample]] = []  # recorded since loading: what ``merged_into`` adds

    def record(self, account: str, kind: str, low: float, high: float, input_seconds: float | None = None) -> None:
        """A job finished between ``low`` and ``high`` seconds (time_scale 1) after its create was accepted."""
        if not (math.isfinite(low) and math.isfinite(high) and 0 <= low < high):
            raise ValueError(f"a finished job needs 0 <= low < high, got {low!r}, {high!r}")
        if input_seconds is not None and not (math.isfinite(input_seconds) and input_seconds > 0):
            input_seconds = None
        series = self._series.setdefault((account, kind), [])
        series.append(sample := Sample(low, high, input_seconds))
        self._new.append((account, kind, sample))
        del series[:-HISTORY]
        for by_length in (False, True):
            self._fits.pop((account, kind, by_length), None)

    def phase(self, account: str, kind: str) -> float:
        """Where in its step the next job's dense polls fall (0..1), different for every job.

        Jobs running side by side, polled on one grid, all learn the same interval; on staggered
        grids their intervals overlap in a fraction of a step, which the next wave's window uses.
        """
        self._phases[(account, kind)] += 1
        return (self._phases[(account, kind)] * GOLDEN) % 1.0

    def samples(self, account: str, kind: str) -> tuple[Sample, ...]:
        return tuple(self._series.get((account, kind), ()))

    def predict(self, account: str, kind: str, input_seconds: float | None = None) -> Prediction | None:
        """The next job's duration, or None before any job of (account, kind) finished."""
        series = self._series.get((account, kind))
        if not series:
            return None
        by_length = bool(input_seconds and input_seconds > 0 and any(s.input_seconds for s in series))
        fit = self._fits.get((account, kind, by_length))
        if fit is None:
            fit = self._fits[(account, kind, by_length)] = _Fit.of(series, by_length)
        base = fit.expected(input_seconds) if by_length and input_seconds else 1.0
        return Prediction(fit.center * base, max(0.0, fit.earliest * base), fit.latest * base, len(series),
                          fit.settled)

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "series": [
            {"account": account, "kind": kind,
             "samples": [[round(s.low, 3), round(s.high, 3), s.input_seconds] for s in series]}
            for (account, kind), series in sorted(self._series.items())]}

    @classmethod
    def from_json(cls, data: Any) -> CompletionModel:
        """The model saved by ``to_json``; anything malformed is skipped (it is only a hint)."""
        model = cls()
        entries = data.get("series") if isinstance(data, dict) and data.get("version") == 1 else None
        for entry in entries if isinstance(entries, list) else ():
            if not (isinstance(entry, dict) and isinstance(entry.get("account"), str)
                    and isinstance(entry.get("kind"), str) and isinstance(entry.get("samples"), list)):
                continue
            for item in entry["samples"]:
                if not (isinstance(item, list) and len(item) == 3 and _number(item[0]) and _number(item[1])):
                    continue
                with contextlib.suppress(ValueError):
                    model.record(entry["account"], entry["kind"], float(item[0]), float(item[1]),
                                 float(item[2]) if _number(item[2]) else None)
        model._new.clear()
        return model

    def merged_into(self, stored: Any) -> dict[str, Any]:
        """``stored`` (``to_json``'s shape, or None) with the samples recorded since this model was loaded."""
        merged = CompletionModel.from_json(stored)
        for account, kind, sample in self._new:
            merged.record(account, kind, sample.low, sample.high, sample.input_seconds)
        return merged.to_json()


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class _Fit:
    """A series summarised in units of each job's expected duration (``expected(input seconds)``)."""

    expected: Callable[[float], float]
    center: float
    earliest: float
    latest: float
    settled: bool

    @classmethod
    def of(cls, series: Sequence[Sample], by_length: bool) -> _Fit:
        used = [s for s in series if s.input_seconds] if by_length else list(series)
        expected = _expected_duration(used) if by_length else (lambda _x: 1.0)
        ratios = [(s.low / b, s.high / b) for s in used for b in [expected(s.input_seconds or 0.0)]]
        masses = _npmle(ratios)
        center = _quantile(masses, 0.5)
        precise = [(a, b) for a, b in ratios if b - a <= PRECISE * center]
        if len(precise) >= 2:  # finely bracketed jobs: their scatter is the jitter between jobs
            mids = [(a + b) / 2 for a, b in precise]
            jitter = 1.4826 * statistics.median(abs(x - statistics.median(mids)) for x in mids)
            earliest = center - max(SPREAD_K * jitter, EARLY_FLOOR * center)
            latest = center + max(SPREAD_K * jitter, LATE_FLOOR * center)
        elif precise:  # one fine bracket: cover it (blind and censored intervals only locate)
            earliest = min(precise[0][0], center * (1 - EARLY_FLOOR))
            latest = max(precise[0][1], center * (1 + LATE_FLOOR))
        else:  # blind: as wide as the durations the bracketed intervals allow (seen-at-once ones only cap)
            bracketed = [(a, b) for a, b in ratios if a > 0]
            spread = _npmle(bracketed) if bracketed else masses
            earliest = min(_quantile(spread, 0.0), center * (1 - EARLY_FLOOR))
            latest = max(_quantile(spread, 1.0), center * (1 + LATE_FLOOR))
        return cls(expected, center, earliest, latest, len(precise) >= 2)


def _expected_duration(series: Sequence[Sample]) -> Callable[[float], float]:
    """Duration by input seconds: a Theil-Sen line (overhead + rate x seconds) when the lengths
    vary, else the median per-second rate."""
    bracketed = [s for s in series if s.low > 0] or series  # a job seen done at once has no midpoint
    xs = [s.input_seconds or 0.0 for s in bracketed]
    mids = [(s.low + s.high) / 2 for s in bracketed]
    floor = 1e-3 * statistics.median(mids)
    if len(xs) >= 3 and max(xs) >= 1.25 * min(xs):
        slope = max(0.0, statistics.median([(mids[j] - mids[i]) / (xs[j] - xs[i]) for i in range(len(xs))
                                            for j in range(i + 1, len(xs)) if xs[j] != xs[i]]))
        intercept = statistics.median(m - slope * x for m, x in zip(mids, xs, strict=True))
        return lambda x: max(floor, intercept + slope * x)
    rate = statistics.median(m / x for m, x in zip(mids, xs, strict=True))
    return lambda x: max(floor, rate * x)


def _npmle(intervals: Sequence[tuple[float, float]], *, rounds: int = 100) -> list[tuple[float, float, float]]:
    """The distribution of durations that best explains the (low, high] intervals (Turnbull's
    self-consistency estimate): (a, b, mass) over the innermost intervals, masses summing to 1.

    It uses every kind of sample at its worth: a wide blind interval spreads its mass, a job seen
    finished at the first poll only caps the duration, finely bracketed jobs pin it down.
    """
    ends = sorted([(low, 1) for low, _ in intervals] + [(high, 0) for _, high in intervals])
    inner = [(a, b) for (a, left), (b, right) in zip(ends, ends[1:], strict=False) if left and not right and b > a]
    rows = Counter(tuple(j for j, (a, b) in enumerate(inner) if low <= a and b <= high) for low, high in intervals)
    mass = [1 / len(inner)] * len(inner)
    for _ in range(rounds):
        new = [0.0] * len(inner)
        for row, count in rows.items():
            share = count / len(intervals) / sum(mass[j] for j in row)
            for j in row:
                new[j] += mass[j] * share
        done = max(abs(x - y) for x, y in zip(new, mass, strict=True)) < 1e-3
        mass = new
        if done:
            break
    return [(a, b, m) for (a, b), m in zip(inner, mass, strict=True) if m > 1e-6]


def _quantile(masses: Sequence[tuple[float, float, float]], q: float) -> float:
    """Where the cumulative mass reaches ``q``, each mass spread evenly over its interval."""
    total = sum(m for _, _, m in masses)
    seen = 0.0
    for a, b, m in masses:
        if seen + m >= q * total:
            return a + (b - a) * (q * total - seen) / m
        seen += m
    return masses[-1][1]


class PollSchedule:
    """The waits between polls of one task, from its prediction, the provider's hints, or backoff.

    The runner makes one per polled task, asks ``next_wait`` after every unfinished answer, and on
    success records ``finished(now)`` into the ``CompletionModel``.
    """

    def __init__(self, kind: str, prediction: Prediction | None, *, accepted_at: float | None,
                 time_scale: float = 1.0, poll_min: float = 3.0, poll_max: float = 30.0,
                 guidance_seconds: float | None = None, phase: float = 0.0) -> None:
        self.scale = time_scale
        self.accepted_at = accepted_at
        self.guidance = guidance(kind) if guidance_seconds is None else guidance_seconds
        self.poll_max = max(self.guidance, poll_max)
        self._interval = poll_min
        self._last_unfinished = 0.0
        self._poll_due = 0.0  # job seconds at which the next poll is meant to leave
        self._aimed = 0  # polls under the guidance aimed at a provider-predicted finish
        self._checked_in = False
        self._dense = 0  # polls made inside the window
        self._phase = phase % 1.0
        self._progress: tuple[float, float] | None = None
        self.prediction = prediction if accepted_at is not None else None
        self.window: tuple[float, float] | None = None  # job seconds of the dense polls
        if self.prediction is not None:
            p = self.prediction
            self.step = max(MIN_INTERVAL, LAG_TARGET * p.seconds, (p.latest - p.earliest) / MAX_WINDOW_POLLS)
            # dense from the earliest plausible finish (settled: half a step later, one poll fewer and a
            # finish at ``earliest`` still seen within half a step), so nearly every job is seen
            # unfinished once in the window: its interval is one step wide and teaches the model
            self.window = (p.earliest + (self.step / 2 if p.settled else 0.0), p.latest)

    def elapsed(self, now: float) -> float | None:
        """Job seconds (time_scale 1) since the create was accepted."""
        return None if self.accepted_at is None else (now - self.accepted_at) / self.scale

    def next_wait(self, now: float, state: TaskState | None = None) -> float:
        """Real seconds to sleep before the next poll, after an unfinished answer ``state`` at ``now``."""
        t = self.elapsed(now)
        if t is not None:  # the provider looked after the request left: when we meant it to, or later
            self._last_unfinished = max(self._last_unfinished, min(t, self._poll_due))
        remaining = None
        if state is not None and state.phase is Phase.RUNNING and state.progress is not None:
            remaining = self._remaining(now, state.progress)  # sampled on every answer, used after the window
        if self.window is not None and t is not None and t < self.window[1]:
            wait = self._windowed(t)
        elif (hint := self._provider_hint(state, remaining)) is not None:
            wait = hint
        else:
            self._interval = min(self.poll_max, max(self.guidance, self._interval))
            wait = self._interval
            self._interval *= BACKOFF_FACTOR
        if t is not None:
            self._poll_due = t + wait
        return wait * self.scale

    def finished(self, now: float) -> tuple[float, float] | None:
        """(low, high) job seconds to ``CompletionModel.record`` for a task seen succeeded at ``now``."""
        t = self.elapsed(now)
        if t is None:
            return None
        return self._last_unfinished, max(t, self._last_unfinished + 1e-3)

    def _windowed(self, t: float) -> float:
        """Dense polls a step apart from when the last one was due to leave (so round trips do not
        add up); before the window, at most one check-in, never sooner than the guidance."""
        assert self.window is not None
        first = self.window[0]
        if t >= first:
            self._dense += 1
            step = self.step
            if (self._dense == 1 and self._phase and self.prediction is not None
                    and self.prediction.samples <= STAGGER_UNTIL):
                # after the poll at the window's start, this job's grid is offset by its ``phase``: jobs
                # running side by side then learn intervals that overlap in a fraction of a step, and the
                # wave after them starts from a narrow bracket (Magic Hour at 3 concurrent: 4 polls, not 5)
                step = max(MIN_INTERVAL, step * self._phase)
            return max(0.0, self._poll_due + step - t)
        gap = first - t
        if gap > CHECK_IN_AFTER and not self._checked_in:
            self._checked_in = True
            return max(self.guidance, gap / 2)
        return max(MIN_INTERVAL, gap)

    def _provider_hint(self, state: TaskState | None, remaining: float | None) -> float | None:
        """Job seconds to wait by the provider's ETA or progress rate, or None when it gives neither."""
        if state is None:
            return None
        if remaining is None and state.eta_seconds:
            eta = state.eta_seconds / self.scale  # the provider's seconds are real ones
            if state.phase is not Phase.RUNNING:  # time to *start*: not a finish to aim at
                return min(self.poll_max, max(self.guidance, eta))
            remaining = eta
        if remaining is None:
            return None
        if remaining < self.guidance and self._aimed < MAX_WINDOW_POLLS:
            self._aimed += 1
            return max(MIN_INTERVAL, remaining)
        return min(self.poll_max, max(self.guidance, remaining))

    def _remaining(self, now: float, progress: float) -> float | None:
        """Job seconds left at the progress rate seen since the first RUNNING answer."""
        if self._progress is None or progress < self._progress[1]:
            self._progress = (now, progress)
            return None
        elapsed, gained = now - self._progress[0], progress - self._progress[1]
        if gained <= 0 or elapsed <= 0:
            return None
        return (1.0 - progress) * elapsed / gained / self.scale


def load_completion_times(state: StateBackend) -> CompletionModel:
    """The model earlier runs saved in ``state`` (any worker's, on a shared state); empty when there
    is none or it cannot be read."""
    try:
        data = state.learned(LEARNED_NAME)
    except LipbatchError:  # the shared state's database is away: only a head start is lost
        data = None
    return CompletionModel.from_json(data)


def save_completion_times(state: StateBackend, model: CompletionModel) -> None:
    """This run's samples added to what ``state`` holds now (other workers may have added theirs since
    this run loaded it); a failure only costs the next run its head start."""
    with contextlib.suppress(OSError, LipbatchError):
        state.learn(LEARNED_NAME, model.merged_into)
