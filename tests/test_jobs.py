"""The background job runner: phases, progress, ETA, stop and end states (no Streamlit, no models).

Work functions block on events the test controls, and the ETA reads a fake clock, so nothing
here depends on how fast the machine is.
"""

from __future__ import annotations

import logging
import threading

import pytest

from core.services.jobs import Cancelled, Job, duration

PHASES = ("loading", "working", "checking")
TIMEOUT = 30  # seconds a test waits for a job that should end at once (only reached when something hangs)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def finished(job: Job) -> Job:
    assert job.wait(TIMEOUT), "the job did not end"
    return job


def test_result_and_progress_per_phase() -> None:
    seen: list[tuple[str, int, int]] = []

    def work(job: Job[str]) -> str:
        for phase, total in (("loading", 2), ("working", 3)):
            job.enter(phase)
            for done in range(1, total + 1):
                job.progress(done, total)
                snap = job.snapshot()
                seen.append((snap.phase, snap.done, snap.total))
        return "result"

    job = finished(Job[str](PHASES).start(work))
    assert seen == [("loading", 1, 2), ("loading", 2, 2), ("working", 1, 3), ("working", 2, 3), ("working", 3, 3)]
    snap = job.snapshot()
    assert (snap.phase, snap.running, snap.outcome, snap.error) == ("done", False, "result", None)
    assert (job.phase, job.outcome) == ("done", "result")


def test_entering_a_phase_starts_its_progress_from_zero() -> None:
    job = Job[None](PHASES)
    job.progress(5, 5)
    job.enter("working")
    snap = job.snapshot()
    assert (snap.phase, snap.done, snap.total, snap.fraction, snap.eta_seconds) == ("working", 0, 0, 0.0, None)
    with pytest.raises(ValueError, match="unknown phase 'sleeping'"):
        job.enter("sleeping")


def test_eta_follows_the_pace_since_the_first_report() -> None:
    clock = Clock()
    job = Job[None](PHASES, clock=clock)
    clock.now += 50  # set-up before the first unit: not part of the pace
    job.progress(1, 20)
    assert job.snapshot().eta_seconds is None, "one report gives no pace yet"
    clock.now += 4
    job.progress(3, 20)  # 2 units in 4 s: too few to call a pace (issue 12: "14 min" at 3 of 165 photos)
    assert job.snapshot().eta_seconds is None
    clock.now += 6
    job.progress(6, 20)  # 5 units in 10 s
    assert job.snapshot().eta_seconds == pytest.approx(2.0 * 14)
    assert job.snapshot().fraction == pytest.approx(0.3)
    clock.now += 1
    job.progress(20, 20)
    assert job.snapshot().eta_seconds == 0
    job.enter("working")
    assert job.snapshot().eta_seconds is None, "a new phase measures its own pace"


def test_eta_starts_from_the_expected_pace_and_moves_to_the_running_rate() -> None:
    """A measured pace (seconds per photo on this machine) gives an ETA at once; a slow first photo or two
    (a batch of crops embedded at once) moves it only part of the way, many timed photos all the way."""
    clock = Clock()
    job = Job[None](PHASES, clock=clock)
    job.expect(1.5)
    job.progress(0, 165)
    clock.now += 12
    job.progress(3, 165)  # 3 photos in 12 s: 4 s a photo alone would say 10.8 min
    eta = job.snapshot().eta_seconds
    assert 1.5 * 162 < eta < 4.0 * 162
    assert eta == pytest.approx((1.5 * 5 + 12) / 8 * 162)
    clock.now += 2.0 * 97
    job.progress(100, 165)  # then 2 s a photo
    assert job.snapshot().eta_seconds == pytest.approx((1.5 * 5 + 12 + 194) / 105 * 65)
    job.enter("working")
    assert job.snapshot().eta_seconds is None, "the expected pace belongs to the phase it was given for"


def test_stop_is_seen_by_the_work_and_ends_it() -> None:
    started = threading.Event()

    def work(job: Job[str]) -> str:
        started.set()
        assert job.stop.wait(TIMEOUT)
        return "kept what was done" if job.should_stop() else "ran to the end"

    job = Job[str](PHASES).start(work)
    assert started.wait(TIMEOUT)
    assert job.snapshot().can_stop and not job.snapshot().stopping
    job.stop.set()
    snap = finished(job).snapshot()
    assert (snap.phase, snap.outcome, snap.stopping, snap.can_stop) == ("done", "kept what was done", True, False)


def test_stop_is_offered_only_in_stoppable_phases() -> None:
    job = Job[None](PHASES, stoppable=("loading", "working"))
    assert job.snapshot().can_stop
    job.enter("checking")
    assert not job.snapshot().can_stop


def test_cancelled_work_ends_cancelled_with_its_message() -> None:
    def work(job: Job[None]) -> None:
        raise Cancelled("stopped before anything was saved")

    snap = finished(Job[None](PHASES).start(work)).snapshot()
    assert (snap.phase, snap.error, snap.outcome, snap.running) == ("cancelled", "stopped before anything was saved",
                                                                    None, False)


@pytest.mark.parametrize("error", [ValueError("the train split is empty."), RuntimeError("model missing"),
                                   OSError("disk full"), KeyError("amy")])
def test_user_errors_end_failed_with_their_message(error: Exception) -> None:
    def work(job: Job[None]) -> None:
        raise error

    snap = finished(Job[None](PHASES).start(work)).snapshot()
    assert (snap.phase, snap.error) == ("failed", str(error))


def test_unexpected_errors_are_logged_with_their_traceback(caplog: pytest.LogCaptureFixture) -> None:
    def work(job: Job[None]) -> None:
        job.enter("working")
        raise ZeroDivisionError("division by zero")

    with caplog.at_level(logging.ERROR, logger="facelab.jobs"):
        job = finished(Job[None](PHASES).start(work))
    assert (job.phase, job.error) == ("failed", "unexpected ZeroDivisionError: division by zero")
    assert caplog.records and caplog.records[0].exc_info is not None


def test_a_job_runs_once_and_needs_real_phases() -> None:
    job = Job[None](PHASES).start(lambda job: None)
    with pytest.raises(RuntimeError, match="already started"):
        job.start(lambda job: None)
    finished(job)
    with pytest.raises(ValueError):
        Job[None](())
    with pytest.raises(ValueError):
        Job[None](("working", "done"))


def test_duration_reads_like_a_person_would_say_it() -> None:
    assert [duration(s) for s in (-3, 0.4, 42, 89, 90, 600, 5399, 5400, 9000)] == [
        "0 s", "0 s", "42 s", "89 s", "2 min", "10 min", "90 min", "1.5 h", "2.5 h"]
