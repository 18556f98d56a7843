"""Background jobs: long work (embedding a dataset, training) in a thread that a page or the CLI watches and can stop.

A Streamlit button click reruns the page script and would interrupt a long call made in it, and
a Ctrl-C in the CLI would tear through TensorFlow mid-epoch; so the work runs in a daemon thread
and reports to its :class:`Job`. The job moves through named phases, each with its progress
(done of total) and an ETA; whoever watches reads a consistent :class:`Snapshot` at any time.
Stopping is cooperative: ``job.stop`` is a ``threading.Event`` the work passes down as
``should_stop`` and checks where stopping is safe. The work always ends in a state the watcher
can show: its outcome, one clear error message, or "cancelled".
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Generic, Self, TypeVar

from core.files import storage_problem

T = TypeVar("T")
END_STATES = ("done", "failed", "cancelled")
USER_ERRORS = (ValueError, RuntimeError, OSError, KeyError)  # their message is meant for the user, as is
MIN_UNITS = 5  # units timed before a phase without an expected pace shows an ETA (at 3 of 165 photos, a 5-minute run said "14 min")
PRIOR_UNITS = 5  # an expected pace weighs as much as this many timed units, then the running rate takes over
log = logging.getLogger("facelab.jobs")


class Cancelled(Exception):
    """The work honoured a stop before it had anything to keep; the message says what that left behind."""


def duration(seconds: float) -> str:
    """A duration as a person reads it: seconds under a minute and a half, then minutes, then hours."""
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def exact_duration(seconds: float) -> str:
    """A measured duration to the second, as a banner reports it: "0.4 s", "32 s", "4 min 52 s", "1 h 5 min"."""
    if seconds < 9.95:
        return f"{max(0.0, seconds):.1f} s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


@dataclass(frozen=True)
class Snapshot(Generic[T]):
    """A job as it was at one moment: consistent, so a page can draw it while the thread moves on."""

    phase: str  # the current phase, or the end state ("done", "failed", "cancelled")
    done: int  # units of the current phase done …
    total: int  # … out of this many (0 until the phase reports)
    eta_seconds: float | None  # None until the phase's pace is known
    stopping: bool  # a stop was requested
    can_stop: bool  # a Stop button would still do something
    outcome: T | None
    error: str | None

    @property
    def running(self) -> bool:
        return self.phase not in END_STATES

    @property
    def fraction(self) -> float:
        """Progress of the current phase in [0, 1], for a progress bar."""
        return min(1.0, self.done / self.total) if self.total else 0.0


class Job(Generic[T]):
    """One piece of work in a daemon thread: phases, progress, ETA, a stop request and an end state.

    The work function receives the job: it calls :meth:`enter` when a phase begins, passes
    :meth:`progress` and :meth:`should_stop` down as callbacks, and returns the outcome. Every
    field is written under one lock, so :meth:`snapshot` never sees half an update.
    """

    def __init__(self, phases: Sequence[str], *, stoppable: Collection[str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not phases or set(phases) & set(END_STATES):
            raise ValueError(f"a job needs phases, none of them an end state ({', '.join(END_STATES)}).")
        self.phases = tuple(phases)
        self.stoppable = frozenset(self.phases if stoppable is None else stoppable)
        self.stop = threading.Event()
        self._clock = clock
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._phase = self.phases[0]
        self._done = self._total = 0
        self._first: tuple[float, int] | None = None  # (time, done) of the phase's first report
        self._last: tuple[float, int] | None = None  # … and of its latest
        self._expected: float | None = None  # the phase's expected seconds per unit (measured on this machine)
        self._outcome: T | None = None
        self._error: str | None = None

    # --- for the work --------------------------------------------------------------------------

    def enter(self, phase: str) -> None:
        """Begin ``phase``: its progress and pace start from zero."""
        if phase not in self.phases:
            raise ValueError(f"unknown phase {phase!r}; this job's phases are {', '.join(self.phases)}.")
        with self._lock:
            self._phase, self._done, self._total, self._first, self._last = phase, 0, 0, None, None
            self._expected = None

    def expect(self, seconds_per_unit: float | None) -> None:
        """The current phase's pace as measured here before (e.g. seconds per photo): the ETA starts from it and
        moves to the running rate as units are timed, instead of guessing from the first two or three."""
        with self._lock:
            self._expected = seconds_per_unit

    def progress(self, done: int, total: int) -> None:
        """``done`` of ``total`` units of the current phase are done (a ``(done, total)`` callback)."""
        now = self._clock()
        with self._lock:
            self._done, self._total = done, total
            if self._first is None:
                self._first = (now, done)
            self._last = (now, done)

    def should_stop(self) -> bool:
        """Whether a stop was requested (pass it down: core checks it between photos, batches, epochs)."""
        return self.stop.is_set()

    # --- for the watcher -----------------------------------------------------------------------

    def start(self, work: Callable[[Self], T], name: str = "facelab-job") -> Self:
        """Run ``work(self)`` in a daemon thread (it must not keep the process alive on exit); returns the job.

        The thread runs in a copy of the starter's context, so the work saves into the workspace that
        started it (``core.config``) whatever the starter's thread does next.
        """
        if self._thread is not None:
            raise RuntimeError("this job was already started.")
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._run, work), name=name, daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the end (at most ``timeout`` seconds); whether the job has ended."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def snapshot(self) -> Snapshot[T]:
        stopping = self.stop.is_set()
        with self._lock:
            return Snapshot(self._phase, self._done, self._total, self._eta(), stopping,
                            not stopping and self._phase in self.stoppable, self._outcome, self._error)

    @property
    def phase(self) -> str:
        """The current phase, or the end state."""
        return self._phase

    @property
    def running(self) -> bool:
        return self._phase not in END_STATES

    @property
    def outcome(self) -> T | None:
        """What the work returned, once the job is done."""
        return self._outcome

    @property
    def error(self) -> str | None:
        """Why the job failed or what its cancellation left behind, as the user should read it."""
        return self._error

    # --- inside ----------------------------------------------------------------------------------

    def _eta(self) -> float | None:
        """Seconds left in the current phase at its running pace since its first report, smoothed.

        The pace starts at the first report, not at the phase's start: the first unit also pays
        for set-up (loading a model, building the network), which would make the estimate too long.
        A few units are no pace (photos are embedded in batches, cached ones are instant): with an
        expected pace the estimate starts there and each timed unit moves it towards the running rate;
        without one there is no estimate until MIN_UNITS units were timed.
        """
        if self._first is None or self._last is None:
            return None if self._expected is None or not self._total else self._expected * max(0, self._total - self._done)
        (t0, done0), (t1, done1) = self._first, self._last
        timed, spent = done1 - done0, t1 - t0
        if self._expected is not None:
            pace = (self._expected * PRIOR_UNITS + spent) / (PRIOR_UNITS + timed)
        elif timed >= MIN_UNITS:
            pace = spent / timed
        else:
            return None
        return pace * max(0, self._total - done1)

    def _end(self, state: str, outcome: T | None = None, error: str | None = None) -> None:
        with self._lock:
            self._outcome, self._error = outcome, error
            self._phase = state  # last: whoever reads ``phase`` without the lock and sees the end finds the outcome

    def _run(self, work: Callable[[Self], T]) -> None:
        try:
            outcome = work(self)
        except Cancelled as exc:
            self._end("cancelled", error=str(exc))
        except USER_ERRORS as exc:
            self._end("failed", error=storage_problem(exc) or str(exc))
        except Exception as exc:  # noqa: BLE001 - the thread must always end in a state the watcher can show
            log.exception("job failed")
            self._end("failed", error=f"unexpected {type(exc).__name__}: {exc}")
        else:
            self._end("done", outcome)
