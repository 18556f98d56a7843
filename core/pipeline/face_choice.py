"""Which face of a photo is *the* face: the one a photo trains, is named by and is verified with.

A photo often shows more than its subject: a bystander cut off at the edge, or a detector's false
box over hair. FaceLab orders every photo's faces by a named rule so that face 0 is the chosen one
everywhere (training, prediction, verification, calibration, the embedding map):

- ``largest``: the biggest box first (FaceLab's rule before issue 12).
- ``central``: large *and* central *and* whole, weighted by how sure the detector is. The default: on
  FaceLab's re-measurement (BENCHMARKS.md, "Which face") it beats ``largest`` with Haar (false boxes over
  hair and bodies passed over) and equals it with MTCNN and dlib HOG; the issue measured the same direction
  on a held-out set of web photos with bystanders cut off at the edge (AUC/EER 0.9964/2.06 % → 0.9987/1.54 %).

The rule changes which face a photo's embedding comes from, so it is part of the pipeline key
(:func:`core.pipeline.embeddings.pipeline_key`) and a cached result never crosses rules.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from core.pipeline.detection.base import Face

EDGE_PENALTY = 0.5  # a face cut off by the photo's border (see cut_off): half the score
EDGE_MARGIN = 1  # pixels: a clipped box ends exactly on the border; one pixel of slack for rounding

Score = Callable[[Face, int, int, float], float]


def area_share(face: Face, width: int, height: int) -> float:
    """The share of the photo the box covers: 1.0 fills it.

    The area, not its square root: with the side (√area) a smaller face nearer the centre outscored a
    labelled subject in a two-person photo (BENCHMARKS.md, "Which face").
    """
    return face.area / max(1, width * height)


def centrality(face: Face, width: int, height: int) -> float:
    """1.0 for a box centred on the photo, falling linearly to 0.0 for one centred on a corner."""
    x, y, w, h = face.box
    dx = (x + w / 2 - width / 2) / (width / 2)
    dy = (y + h / 2 - height / 2) / (height / 2)
    return max(0.0, 1.0 - math.hypot(dx, dy) / math.sqrt(2))


def cut_off(face: Face, width: int, height: int) -> bool:
    """Whether the photo's border cuts the face: its box reaches a border (boxes are clipped to the photo, so a cut
    face ends there) without spanning the photo from one side to the other, as the subject of a tight crop does."""
    x, y, w, h = face.box
    left, top = x <= EDGE_MARGIN, y <= EDGE_MARGIN
    right, bottom = x + w >= width - EDGE_MARGIN, y + h >= height - EDGE_MARGIN
    return (left or right or top or bottom) and not (left and right) and not (top and bottom)


def confidence(face: Face, best_score: float) -> float:
    """The detector's score relative to the photo's best one, in [0, 1].

    Detectors score on different scales (MTCNN a probability, Haar a count of agreeing windows, dlib an
    SVM margin), but within one photo a higher score always means a surer face. A detector whose scores
    are all zero or negative gives no usable confidence: 1.0 for every face.
    """
    if best_score <= 0:
        return 1.0
    return min(1.0, max(0.0, face.score / best_score))


def _largest(face: Face, width: int, height: int, best_score: float) -> float:
    return float(face.area)


def _central(face: Face, width: int, height: int, best_score: float) -> float:
    edge = EDGE_PENALTY if cut_off(face, width, height) else 1.0
    return area_share(face, width, height) * centrality(face, width, height) * edge * confidence(face, best_score)


RULES: dict[str, Score] = {"largest": _largest, "central": _central}
DESCRIPTIONS: dict[str, str] = {
    "largest": "the largest face",
    "central": "the large, central, whole face the detector is surest of",
}
DEFAULT_FACE_CHOICE = "central"


def check_face_choice(rule: str) -> str:
    """The rule, or a ValueError naming the known ones."""
    if rule not in RULES:
        raise ValueError(f"unknown face choice {rule!r}; choose one of: {', '.join(RULES)}.")
    return rule


def choice_score(face: Face, width: int, height: int, rule: str, best_score: float | None = None) -> float:
    """How strongly ``rule`` prefers this face in a ``width`` × ``height`` photo (higher is preferred).

    ``best_score``: the highest detector score among the photo's faces (default: this face's own).
    """
    return RULES[check_face_choice(rule)](face, width, height, face.score if best_score is None else best_score)


def order_faces(faces: Sequence[Face], width: int, height: int, rule: str = DEFAULT_FACE_CHOICE) -> list[Face]:
    """The faces with the chosen one first, then the others in the rule's order (ties keep detector order)."""
    check_face_choice(rule)
    best = max((face.score for face in faces), default=0.0)
    return sorted(faces, key=lambda face: -choice_score(face, width, height, rule, best))


def chosen_note(rule: str) -> str:
    """What a page or report says about a photo with several faces ("the central one is used")."""
    return {"largest": "the largest one is used", "central": "the central one is used"}[check_face_choice(rule)]


def several_faces_note(photos: int, rule: str = DEFAULT_FACE_CHOICE) -> str:
    """"3 photos show several faces; the central one is used." ("" for none), for the Audit and the Builder."""
    if photos <= 0:
        return ""
    return f"{photos} photo{'s show' if photos > 1 else ' shows'} several faces; {chosen_note(rule)}."
