"""A dlib worker: ``python -I _dlib_worker.py describe MODEL`` or ``… hog``, requests on stdin, answers on stdout.

Run by :mod:`core.pipeline._dlib_pool`, by path and in isolated mode, so that the process imports
only numpy and dlib (no FaceLab package, no TensorFlow, no Streamlit). The protocol is raw
little-endian bytes, one request answered before the next is read:

- ``describe``: ``count, num_jitters`` (two int32), then ``count`` RGB uint8 chips of CHIP×CHIP;
  the answer is ``count`` × DIM float32 (dlib's face descriptors).
- ``hog``: ``height, width, upsample`` (three int32), then one RGB uint8 image; the answer is the
  number of faces (int32), then per face ``left, top, right, bottom, score`` as float64 (dlib's
  frontal-face HOG detector).

The worker exits when stdin closes, so it never outlives the process that started it. It ignores
Ctrl-C (SIGINT reaches the whole process group of a terminal): the parent decides when to stop.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator

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


def requests(stdin, stdout, fields: int, payload_size: Callable[[list[int]], int]) -> Iterator[tuple[list[int], bytes]]:  # noqa: ANN001
    """Say "ready", then each request: its ``fields`` int32 header values and the ``payload_size(header)`` bytes
    after them, until stdin closes."""
    stdout.write(b"ready\n")
    stdout.flush()
    while (header := read_exactly(stdin, 4 * fields)) is not None:
        values = [int(v) for v in np.frombuffer(header, dtype="<i4")]
        payload = read_exactly(stdin, payload_size(values))
        if payload is None:
            return
        yield values, payload


def describe(model_path: str, stdin, stdout) -> None:  # noqa: ANN001 - binary file objects
    import dlib

    model = dlib.face_recognition_model_v1(model_path)
    for (count, num_jitters), payload in requests(stdin, stdout, 2, lambda header: header[0] * CHIP * CHIP * 3):
        chips = np.frombuffer(payload, dtype=np.uint8).reshape(count, CHIP, CHIP, 3)
        vectors = [model.compute_face_descriptor(np.ascontiguousarray(chip), num_jitters=num_jitters) for chip in chips]
        stdout.write(np.asarray(vectors, dtype="<f4").reshape(count, DIM).tobytes())
        stdout.flush()


def hog(stdin, stdout) -> None:  # noqa: ANN001 - binary file objects
    import dlib

    detector = dlib.get_frontal_face_detector()
    for (height, width, upsample), payload in requests(stdin, stdout, 3, lambda header: header[0] * header[1] * 3):
        image = np.frombuffer(payload, dtype=np.uint8).reshape(height, width, 3)
        rects, scores, _ = detector.run(image, upsample)
        found = [(r.left(), r.top(), r.right(), r.bottom(), s) for r, s in zip(rects, scores)]
        stdout.write(np.asarray([len(found)], dtype="<i4").tobytes())
        stdout.write(np.asarray(found, dtype="<f8").reshape(len(found), 5).tobytes())
        stdout.flush()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    streams = sys.stdin.buffer, sys.stdout.buffer
    if sys.argv[1] == "hog":
        hog(*streams)
    else:
        describe(sys.argv[2], *streams)
