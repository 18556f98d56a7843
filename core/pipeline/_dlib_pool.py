"""dlib's work in worker processes, one per core: face descriptors and HOG face detection.

dlib's CPU code (the dlib-bin wheels have no BLAS) uses one core and holds Python's GIL for the
whole call: about 120 ms a descriptor chip, 50–100 ms a photo for the HOG detector here. In the
server process that wastes the other cores and freezes every other thread, i.e. every other browser
session's page, while it runs. Each worker (:mod:`core.pipeline._dlib_worker`) holds its own copy of
the model; a call's work is shared between them, so it runs on all cores at once and the server's
threads keep the GIL.

``FACELAB_DLIB_WORKERS`` sets the number of workers of each kind (default: the CPU count, at most
MAX_DEFAULT_WORKERS); 0 computes in the calling process. Every request has a deadline: a worker
that dies, or stalls (stopped, swapped out, deadlocked), is killed when it passes it and a fresh
one started, so one bad worker costs one request (computed in the calling process), never every
session's work from then on. Only workers that cannot start at all make the pool give up for the
rest of the process's life.
"""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from core.pipeline import _dlib_worker as protocol

WORKERS_ENV = "FACELAB_DLIB_WORKERS"
MAX_DEFAULT_WORKERS = 4
REQUEST_SECONDS = 30.0  # a request's deadline: this (a worker's start included) …
CHIP_SECONDS = 2.0  # … plus this per chip a worker gets, per jitter round (about 0.12 s on one core here) …
MEGAPIXEL_SECONDS = 4.0  # … or per megapixel a HOG worker scans, upsampling included (about 0.3 s here)

Job = tuple[str, ...]  # the worker's command-line arguments: ("describe", model path) or ("hog",)
Item = TypeVar("Item")
Answer = TypeVar("Answer")

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

    def __init__(self, job: Job) -> None:
        self.process = subprocess.Popen([sys.executable, "-I", protocol.__file__, *job],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.ready = False

    def wait_ready(self) -> None:
        if not self.ready:
            line = self.process.stdout.readline()  # type: ignore[union-attr]
            if line != b"ready\n":
                raise NotStarted(f"dlib worker did not start (exit code {self.process.poll()}).")
            self.ready = True

    def send(self, *parts: np.ndarray) -> None:
        stdin = self.process.stdin
        for part in parts:
            stdin.write(np.ascontiguousarray(part).tobytes())  # type: ignore[union-attr]
        stdin.flush()  # type: ignore[union-attr]

    def receive(self, size: int) -> bytes:
        data = protocol.read_exactly(self.process.stdout, size)
        if data is None:
            raise RuntimeError(f"dlib worker stopped (exit code {self.process.poll()}).")
        return data

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


def _describe(worker: _Worker, chips: np.ndarray, num_jitters: int) -> np.ndarray:
    worker.send(np.asarray([len(chips), num_jitters], dtype="<i4"), np.asarray(chips, dtype=np.uint8))
    data = worker.receive(len(chips) * protocol.DIM * 4)
    return np.frombuffer(data, dtype="<f4").reshape(len(chips), protocol.DIM).astype(np.float32)


def _hog(worker: _Worker, image: np.ndarray, upsample: int) -> np.ndarray:
    height, width = image.shape[:2]
    worker.send(np.asarray([height, width, upsample], dtype="<i4"), np.asarray(image, dtype=np.uint8))
    count = int(np.frombuffer(worker.receive(4), dtype="<i4")[0])
    return np.frombuffer(worker.receive(count * 5 * 8), dtype="<f8").reshape(count, 5)


class WorkerPool:
    """Worker processes of one job; calls are thread-safe (they take turns)."""

    def __init__(self, job: Job, workers: int) -> None:
        self._job = job
        self._workers = [_Worker(job) for _ in range(workers)]  # they load their model while we go on
        self._lock = threading.Lock()

    def describe(self, chips: np.ndarray, num_jitters: int) -> np.ndarray:
        """128-d descriptors of uint8 chips (N, 150, 150, 3), in order (a ``describe`` pool)."""
        parts = [part for part in np.array_split(chips, len(self._workers)) if len(part)]
        seconds = REQUEST_SECONDS + CHIP_SECONDS * max(map(len, parts), default=0) * (1 + num_jitters)
        vectors = self._run(parts, lambda worker, part: _describe(worker, part, num_jitters), seconds)
        return np.concatenate(vectors) if vectors else np.zeros((0, protocol.DIM), np.float32)

    def detect(self, images: Sequence[np.ndarray], upsample: int) -> list[np.ndarray]:
        """dlib HOG faces of each RGB uint8 image as rows of ``left, top, right, bottom, score`` (a ``hog`` pool).

        Each worker takes the next image when it is done with one, so a large photo holds up one worker only.
        """
        megapixels = sum(image.shape[0] * image.shape[1] for image in images) * 4 ** upsample / 1e6
        seconds = REQUEST_SECONDS + MEGAPIXEL_SECONDS * megapixels
        return self._run(list(images), lambda worker, image: _hog(worker, image, upsample), seconds)

    def _run(self, items: list[Item], ask: Callable[[_Worker, Item], Answer], seconds: float) -> list[Answer]:
        """Answers to ``items`` in order, each worker (on a thread of its own) asking for the next item left.

        WorkerRestarted when a worker failed or passed the deadline (it was replaced); NotStarted when
        workers cannot start.
        """
        if not items:
            return []
        with self._lock:
            used = self._workers[:len(items)]
            expired = threading.Event()
            failures: list[Exception] = []
            slots: list[Answer | None] = [None] * len(items)
            queue = iter(range(len(items)))
            queue_lock = threading.Lock()

            def stop_all() -> None:
                for worker in used:
                    worker.process.kill()  # ends any pipe write or read blocked below

            def expire() -> None:
                expired.set()
                stop_all()

            def serve(worker: _Worker) -> None:
                try:
                    worker.wait_ready()
                    while not failures:
                        with queue_lock:
                            index = next(queue, None)
                        if index is None:
                            return
                        slots[index] = ask(worker, items[index])
                except (OSError, ValueError, RuntimeError) as exc:
                    failures.append(exc)
                    stop_all()

            watchdog = threading.Timer(seconds, expire)
            watchdog.start()
            try:
                helpers = [threading.Thread(target=serve, args=(worker,), name="facelab-dlib-request")
                           for worker in used[1:]]
                for helper in helpers:
                    helper.start()
                serve(used[0])
                for helper in helpers:
                    helper.join()
            finally:
                watchdog.cancel()
            if failures:
                self._replace(used, f"no answer within {seconds:.0f} s" if expired.is_set() else None,
                              next((f for f in failures if isinstance(f, NotStarted)), failures[0]))
        return slots  # type: ignore[return-value] - every slot was answered

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
        self._workers[:len(used)] = [_Worker(self._job) for _ in used]
        raise WorkerRestarted(f"dlib worker failed ({reason}); it was restarted.") from exc

    def close(self) -> None:
        for worker in self._workers:
            worker.close()


_pools: dict[tuple[Job, int], WorkerPool | None] = {}
_pools_lock = threading.Lock()


def pool_for(job: Job) -> WorkerPool | None:
    """The process's pool for this job (started on first call), or None to compute in-process.

    Keyed by process id too: a forked child starts its own workers, never writes to its parent's.
    """
    key = (job, os.getpid())
    with _pools_lock:
        if key not in _pools:
            count = worker_count()
            try:
                _pools[key] = WorkerPool(job, count) if count else None
            except OSError as exc:
                log.warning("dlib worker processes could not start (%s); computing in-process.", exc)
                _pools[key] = None
        return _pools[key]


def in_workers(job: Job, work: Callable[[WorkerPool], Answer], here: Callable[[], Answer]) -> Answer:
    """``work`` done by the job's worker processes, or ``here`` in this process when there are none, when a worker
    failed during this request (a fresh one takes the next), or when they cannot start (then never again)."""
    pool = pool_for(job)
    if pool is not None:
        try:
            return work(pool)
        except WorkerRestarted:
            pass
        except RuntimeError as exc:
            give_up(job, exc)
    return here()


def give_up(job: Job, reason: Exception) -> None:
    """Stop using the pool for this job when its workers cannot start: later calls compute in-process."""
    key = (job, os.getpid())
    with _pools_lock:
        pool = _pools.get(key)
        _pools[key] = None
    log.warning("dlib worker processes failed (%s); computing in-process from now on.", reason)
    if pool is not None:
        pool.close()


@atexit.register
def _close_all() -> None:
    for (_, pid), pool in list(_pools.items()):
        if pool is not None and pid == os.getpid():
            pool.close()
