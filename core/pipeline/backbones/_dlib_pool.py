"""dlib face descriptors computed in worker processes, one per core.

dlib's CPU network (the dlib-bin wheels have no BLAS) uses one core and holds Python's GIL
for the whole call, about 120 ms a chip here. In the server process that wastes the other
cores and freezes every other thread, i.e. every other browser session's page, while it
runs. Each worker (:mod:`core.pipeline.backbones._dlib_worker`) holds its own copy of the model and
the chips of a call are split between them, so they are described on all cores at once
and the server's threads keep the GIL.

``FACELAB_DLIB_WORKERS`` sets the number of workers (default: the CPU count, at most
MAX_DEFAULT_WORKERS); 0 computes in the calling process. A worker that fails to start or
dies makes the pool fall back to in-process computing for the rest of the process's life.
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
                raise RuntimeError(f"dlib worker did not start (exit code {self.process.poll()}).")
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


class DescriptorPool:
    """Worker processes for one model file; ``describe`` is thread-safe (calls take turns)."""

    def __init__(self, model_path: Path, workers: int) -> None:
        self._workers = [_Worker(model_path) for _ in range(workers)]  # they load the model while we go on
        self._lock = threading.Lock()

    def describe(self, chips: np.ndarray, num_jitters: int) -> np.ndarray:
        """128-d descriptors of uint8 chips (N, 150, 150, 3), in order; RuntimeError if a worker failed."""
        parts = [part for part in np.array_split(chips, len(self._workers)) if len(part)]
        with self._lock:
            try:
                for worker, part in zip(self._workers, parts):
                    worker.wait_ready()
                    worker.send(part, num_jitters)
                vectors = [worker.receive(len(part)) for worker, part in zip(self._workers, parts)]
            except (OSError, ValueError) as exc:
                raise RuntimeError(f"dlib worker failed: {exc}") from exc
        return np.concatenate(vectors) if vectors else np.zeros((0, protocol.DIM), np.float32)

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
    """Stop using the pool for this model after a failure: later calls compute in-process."""
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
