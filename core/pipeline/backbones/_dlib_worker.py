"""A dlib descriptor worker: ``python -I _dlib_worker.py MODEL`` reads face chips on stdin, writes descriptors.

Run by :mod:`core.pipeline.backbones._dlib_pool`, by path and in isolated mode, so that the process
imports only numpy and dlib (no FaceLab package, no TensorFlow, no Streamlit). The
protocol is raw little-endian bytes: a request is ``count, num_jitters`` as two int32 and
then ``count`` RGB uint8 chips of CHIP×CHIP; the reply is ``count`` × 128 float32. The
worker exits when stdin closes, so it never outlives the process that started it. It ignores
Ctrl-C (SIGINT reaches the whole process group of a terminal): the parent decides when to stop.
"""

from __future__ import annotations

import signal
import sys

import numpy as np

CHIP = 150
DIM = 128


def read_exactly(stream, size: int) -> bytes | None:  # noqa: ANN001 - a binary file object
    """``size`` bytes, or None at a clean end of input."""
    data = bytearray()
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def main(model_path: str) -> None:
    import dlib

    model = dlib.face_recognition_model_v1(model_path)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    stdout.write(b"ready\n")
    stdout.flush()
    while (header := read_exactly(stdin, 8)) is not None:
        count, num_jitters = (int(v) for v in np.frombuffer(header, dtype="<i4"))
        payload = read_exactly(stdin, count * CHIP * CHIP * 3)
        if payload is None:
            return
        chips = np.frombuffer(payload, dtype=np.uint8).reshape(count, CHIP, CHIP, 3)
        vectors = [model.compute_face_descriptor(np.ascontiguousarray(chip), num_jitters=num_jitters) for chip in chips]
        stdout.write(np.asarray(vectors, dtype="<f4").reshape(count, DIM).tobytes())
        stdout.flush()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    main(sys.argv[1])
