"""A real two-face photo for the face-choice tests: a subject in the middle and a bigger bystander cut off at the edge.

Composed from two photos of five_celebrity_faces (the test skips when the dataset is absent; nothing is copied
into the repository): Madonna whole in the centre, Jerry Seinfeld's face enlarged and a third of it cut off by the
right edge. Every detector finds both faces, and the bystander's box is the larger.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from tests.conftest import shared_dataset

WIDTH, HEIGHT = 960, 540
SUBJECT_X = (360, 600)  # the subject's photo spans these columns: its face box's centre lies between them


def _photo(person: str, index: int) -> Image.Image:
    folder = shared_dataset("five_celebrity_faces") / "train" / person
    return Image.open(sorted(folder.iterdir())[index]).convert("RGB")


def two_face_image() -> Image.Image:
    """The composed photo (960×540)."""
    canvas = Image.new("RGB", (WIDTH, HEIGHT), (190, 190, 190))
    subject = _photo("madonna", 0)
    subject = subject.resize((round(subject.width * 360 / subject.height), 360))
    canvas.paste(subject, ((WIDTH - subject.width) // 2, (HEIGHT - subject.height) // 2))
    bystander = _photo("jerry_seinfeld", 2).resize((600, 600))  # its face: about (162, 164, 260, 260) of 600×600
    canvas.paste(bystander, (WIDTH - 331, -24))  # the face's right third lies beyond the edge
    return canvas


def two_face_photo(folder: Path | None = None) -> bytes:
    """The composed photo as PNG bytes; also written to ``folder / "two_faces.png"`` when given."""
    buffer = io.BytesIO()
    two_face_image().save(buffer, format="PNG")
    if folder is not None:
        (folder / "two_faces.png").write_bytes(buffer.getvalue())
    return buffer.getvalue()


def is_subject(box: tuple[int, int, int, int]) -> bool:
    """Whether a face box is the subject's (its centre within the subject's photo), not the bystander's."""
    x, _, w, _ = box
    return SUBJECT_X[0] <= x + w / 2 <= SUBJECT_X[1]
