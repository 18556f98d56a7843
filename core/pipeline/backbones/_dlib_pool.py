"""dlib face descriptors computed in worker processes, one per core.

dlib's CPU network (the dlib-bin wheels have no BLAS) uses one core and holds Python's GIL
for the whole call, about 120 ms a chip here. In the server process that wastes the other
cores and freezes every other thread, i.e. every other browser session's page, while it
runs. Each worker (:mod:`core.pipeline.backbones._dlib_worker`) holds its own copy of the model and
the chips of a call are split between them, so they are described on all cores at once
and the server's threads keep the GIL.

``FACELAB_DLIB_WORKERS`` sets the number of workers (default: the CPU count, at most
MAX_DEFAULT_WORKERS); 0 computes in the calling process. Every request has a deadline: a worker
that dies, or stalls (stopped, swapped out, deadlocked), is killed when it passes it and a fresh
one started, so one bad worker costs one request (computed in the calling process), never every
session's embedding from then on. Only workers that cannot start at all make the pool give up
for the rest of the process's life.
"""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from core.pipeline.backbones import _dlib_worker as protocol

WORKERS_ENV = "FACELAB_DLIB_WORKERS"
MAX_DEFAULT_WORKERS = 4
REQUEST_SECONDS = 30.0  # a request's deadline: this (a worker's start included) …
CHIP_SECONDS = 2.0  # … plus this per chip a worker gets, per jitter round (about 0.12 s on one core here)

log = logging.getLogger(__name__)


def worker_count() -> int:
    """How many worker processes to use, from ``FACELAB_DLIB_WORKERS`` or the CPU count."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    if not value:
        return min(os.cpu_count() or 1, MAX_DEFAULT_WORKERS)
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise ValueError(f"{WORKERS_ENV} must be a whole number ≥ 0 (0 = no worker processes), got {value!r}.")
    return count


class NotStarted(RuntimeError):
    """A worker process never became ready (no dlib, no model, no memory): the pool cannot be used."""


class WorkerRestarted(RuntimeError):
    """A worker died or passed its deadline during a request; it was replaced, and this request is the caller's."""


class _Worker:
    """One worker process and its pipes."""

    def __init__(self, model_path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-I", protocol.__file__, str(model_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.ready = False

    def wait_ready(self) -> None:
        if not self.ready:
            line = self.process.stdout.readline()  # type: ignore[union-attr]
            if line != b"ready\n":
                raise NotStarted(f"dlib worker did not start (exit code {self.process.poll()}).")
            self.ready = True

    def send(self, chips: np.ndarray, num_jitters: int) -> None:
        stdin = self.process.stdin
        stdin.write(np.asarray([len(chips), num_jitters], dtype="<i4").tobytes())  # type: ignore[union-attr]
        stdin.write(np.ascontiguousarray(chips, dtype=np.uint8).tobytes())  # type: ignore[union-attr]
        stdin.flush()  # type: ignore[union-attr]

    def receive(self, count: int) -> np.ndarray:
        data = protocol.read_exactly(self.process.stdout, count * protocol.DIM * 4)
        if data is None:
            raise RuntimeError(f"dlib worker stopped (exit code {self.process.poll()}).")
        return np.frombuffer(data, dtype="<f4").reshape(count, protocol.DIM).astype(np.float32)

    def close(self) -> None:
        try:
            self.process.stdin.close()  # type: ignore[union-attr]
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()

    def kill(self) -> None:
        """End the process now (SIGKILL works on a stopped one too) and let go of its pipes."""
        self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            try:
                pipe.close()  # type: ignore[union-attr]
            except OSError:  # unsent bytes to a dead worker
                pass


class DescriptorPool:
    """Worker processes for one model file; ``describe`` is thread-safe (calls take turns)."""

    def __init__(self, model_path: Path, workers: int) -> None:
        self._model_path = model_path
        self._workers = [_Worker(model_path) for _ in range(workers)]  # they load the model while we go on
        self._lock = threading.Lock()

    def describe(self, chips: np.ndarray, num_jitters: int) -> np.ndarray:
        """128-d descriptors of uint8 chips (N, 150, 150, 3), in order.

        WorkerRestarted when a worker failed or stalled (it was replaced); RuntimeError when workers cannot start.
        """
        parts = [part for part in np.array_split(chips, len(self._workers)) if len(part)]
        with self._lock:
            used = self._workers[:len(parts)]
            seconds = REQUEST_SECONDS + CHIP_SECONDS * max(map(len, parts), default=0) * (1 + num_jitters)
            expired = threading.Event()

            def expire() -> None:
                expired.set()
                for worker in used:
                    worker.process.kill()  # ends the pipe write or read blocked below

            watchdog = threading.Timer(seconds, expire)
            watchdog.start()
            try:
                for worker, part in zip(used, parts):
                    worker.wait_ready()
                    worker.send(part, num_jitters)
                vectors = [worker.receive(len(part)) for worker, part in zip(used, parts)]
            except (OSError, ValueError, RuntimeError) as exc:
                self._replace(used, f"no answer within {seconds:.0f} s" if expired.is_set() else None, exc)
            finally:
                watchdog.cancel()
        return np.concatenate(vectors) if vectors else np.zeros((0, protocol.DIM), np.float32)

    def _replace(self, used: list[_Worker], timeout: str | None, exc: Exception) -> None:
        """Kill the workers of a failed request (the others' replies would be out of step) and start fresh ones.

        ``timeout`` says the deadline passed (a slow start included); a worker that ended before it was ready,
        by itself, cannot start: the pool is then given up (``exc`` raised as it is).
        """
        for worker in used:
            worker.kill()
        if isinstance(exc, NotStarted) and timeout is None:
            raise exc
        reason = timeout or str(exc)
        log.warning("dlib worker failed (%s); restarted it, this request is computed in-process.", reason)
        self._workers[:len(used)] = [_Worker(self._model_path) for _ in used]
        raise WorkerRestarted(f"dlib worker failed ({reason}); it was restarted.") from exc

    def close(self) -> None:
        for worker in self._workers:
            worker.close()


_pools: dict[tuple[str, int], DescriptorPool | None] = {}
_pools_lock = threading.Lock()


def pool_for(model_path: Path) -> DescriptorPool | None:
    """The process's pool for this model (started on first call), or None to compute in-process.

    Keyed by process id too: a forked child starts its own workers, never writes to its parent's.
    """
    key = (str(model_path), os.getpid())
    with _pools_lock:
        if key not in _pools:
            count = worker_count()
            try:
                _pools[key] = DescriptorPool(model_path, count) if count else None
            except OSError as exc:
                log.warning("dlib worker processes could not start (%s); describing faces in-process.", exc)
                _pools[key] = None
        return _pools[key]


def give_up(model_path: Path, reason: Exception) -> None:
    """Stop using the pool for this model when its workers cannot start: later calls compute in-process."""
    key = (str(model_path), os.getpid())
    with _pools_lock:
        pool = _pools.get(key)
        _pools[key] = None
    log.warning("dlib worker processes failed (%s); describing faces in-process from now on.", reason)
    if pool is not None:
        pool.close()


@atexit.register
def _close_all() -> None:
    for (_, pid), pool in list(_pools.items()):
        if pool is not None and pid == os.getpid():
            pool.close()
