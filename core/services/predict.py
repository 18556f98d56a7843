"""The predict service: name every face in new photos with a saved run, and reject strangers.

The Predict page and ``python -m core predict`` both go through :func:`predictor_for_run`
and :class:`Predictor`; the rule for unknown faces is :mod:`core.compare.unknown`. The
page's engine lives here too (which photos, the per-session store of predictions, the
gallery's filters, the summary figures), so the page only arranges widgets and the CLI can
reuse any of it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from core.compare.distances import pairwise_distances
from core.compare.unknown import UNKNOWN_LABEL, UnknownRule, min_confidence_for, nearest_by_person
from core.data.layout import Dataset, fingerprint, may_open, scan
from core.data.names import person_key
from core.drawing import KNOWN, UNKNOWN, Label, draw_labels
from core.images import downscale, encode_jpeg, is_image_name, load_image
from core.pipeline.alignment import legacy_crop
from core.pipeline.backbones import BACKBONES
from core.pipeline.detection import DETECTORS
from core.pipeline.embeddings import Pipeline, Progress, Source, faces_note
from core.runs import load_run

# A gallery extra: "finetuned" when a fine-tuned run's training embeddings come from its own retrained network
# (core.services.train), so a new face is embedded by that network too before distances are measured.
EMBEDDING_SPACE = "embedding_space"
FINETUNED_SPACE = "finetuned"


@dataclass
class FacePrediction:
    """One face in a photo: where, who (or unknown), how sure, and its nearest training face."""

    box: tuple[int, int, int, int]
    label: str
    confidence: float
    top3: list[tuple[str, float]]
    distance: float | None
    nearest: int  # index into the run's training gallery, -1 when none
    detector_score: float
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)  # for nearest training photos

    @property
    def unknown(self) -> bool:
        return self.label == UNKNOWN_LABEL

    @property
    def best_guess(self) -> str:
        """The person the head ranked first, even when the face was rejected as unknown."""
        return self.top3[0][0] if self.top3 else self.label

    @property
    def text(self) -> str:
        """The label as a person reads it: "amy 98%", or "unknown (closest: amy, 63%)" — the percentage is the
        best guess's confidence, not how unknown the face is."""
        if self.unknown:
            return f"{UNKNOWN_LABEL} (closest: {self.best_guess}, {self.confidence:.0%})"
        return f"{self.label} {self.confidence:.0%}"

    def to_dict(self) -> dict[str, Any]:
        return {"box": list(self.box), "label": self.label, "text": self.text, "confidence": round(self.confidence, 4),
                "top3": [[name, round(p, 4)] for name, p in self.top3],
                "distance": None if self.distance is None else round(self.distance, 4),
                "detector_score": round(self.detector_score, 4)}


@dataclass
class PhotoPrediction:
    """Every face of one photo; ``truth`` is the person folder's name when the photo is labelled.

    ``known`` holds the :func:`~core.data.names.person_key` of every person the run knows; with it a labelled
    photo of anyone else is a stranger, whose right answer is unknown (open-set scoring). None judges every
    labelled photo as one of the run's people.
    """

    name: str
    truth: str | None = None
    faces: list[FacePrediction] = field(default_factory=list)
    error: str | None = None
    found: int = 0  # faces the detector found; more than ``faces`` when the face cap applied
    known: frozenset[str] | None = field(default=None, repr=False)

    @property
    def faces_found(self) -> int:
        """Faces the detector found in the photo (``found`` is 0 for predictions made by hand)."""
        return max(self.found, len(self.faces))

    @property
    def note(self) -> str:
        """What the face cap left out ("49 faces found, the 20 largest were used"), or ""."""
        return faces_note(self.found, len(self.faces))

    @property
    def predicted(self) -> str | None:
        """The photo's answer: the label of its chosen face (face 0 in the run's face-choice order)."""
        return self.faces[0].label if self.faces else None

    @property
    def stranger(self) -> bool:
        """A labelled photo of someone the run does not know (names compared by :func:`person_key`)."""
        return self.truth is not None and self.known is not None and person_key(self.truth) not in self.known

    @property
    def correct(self) -> bool | None:
        """Whether the chosen face got the right answer: its person (same :func:`person_key`), or unknown for a
        stranger. None for unlabelled photos and for those without a face or unusable: the detector, not the
        run, passed over them, so they are counted apart (as ``train`` does for its test accuracy)."""
        if self.truth is None or not self.faces:
            return None
        answer = self.faces[0]
        if self.stranger:
            return answer.unknown
        return not answer.unknown and person_key(answer.label) == person_key(self.truth)

    @property
    def verdict(self) -> str:
        """The judgement in words: "right", "wrong, is amy", "correctly rejected", "wrongly accepted as amy";
        "" when the photo is not judged."""
        if self.correct is None:
            return ""
        if self.stranger:
            return "correctly rejected" if self.correct else f"wrongly accepted as {self.predicted}"
        return "right" if self.correct else f"wrong, is {self.truth}"

    @property
    def confidence(self) -> float | None:
        """How sure the answer (the chosen face) is; None without a face."""
        return self.faces[0].confidence if self.faces else None

    @property
    def no_face(self) -> bool:
        """A usable photo in which the detector found nobody (never judged: counted and listed apart)."""
        return self.error is None and not self.faces

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "truth": self.truth, "predicted": self.predicted, "correct": self.correct,
                "stranger": self.stranger, "verdict": self.verdict, "error": self.error,
                "faces_found": self.faces_found, "note": self.note,
                "faces": [f.to_dict() for f in self.faces]}


class Predictor:
    """A loaded run plus the pipeline it was trained with."""

    def __init__(self, run: Any, pipeline: Pipeline, rule: UnknownRule | None = None) -> None:
        self.run = run
        self.pipeline = pipeline
        extras = run.extras
        self.gallery = np.asarray(extras.get("train_embeddings", np.zeros((0, pipeline.backbone.embedding_dim))), np.float32)
        self.gallery_labels = [str(x) for x in extras.get("train_labels", [])]
        self.gallery_paths = [str(x) for x in extras.get("train_paths", [])]
        calibrated = extras.get("unknown_max_distance")
        default_distance = float(calibrated) if calibrated is not None and np.isfinite(calibrated) else None
        self.rule = rule or UnknownRule(min_confidence_for(len(run.labels)), default_distance)
        self.finetuned = run.head.kind == "finetune"
        self.own_space = self.finetuned and str(extras.get(EMBEDDING_SPACE, "")) == FINETUNED_SPACE

    def _classify(self, embeddings: np.ndarray, crops: np.ndarray | None) -> np.ndarray:
        return self.run.head.predict_proba(crops if self.finetuned else embeddings)

    def _faces(self, result: Any, embeddings: np.ndarray, probabilities: np.ndarray) -> list[FacePrediction]:
        """Each face named by ``probabilities``; ``embeddings`` (in the gallery's space) give the distance check."""
        labels = self.run.labels
        best, where = nearest_by_person(embeddings, self.gallery, self.gallery_labels, labels)
        faces = []
        for i, face in enumerate(result.faces):
            order = np.argsort(-probabilities[i])
            top = int(order[0])
            distance = float(best[i, top]) if np.isfinite(best[i, top]) else None
            confidence = float(probabilities[i, top])
            label = UNKNOWN_LABEL if self.rule.rejects(confidence, distance) else labels[top]
            faces.append(FacePrediction(face.box, label, confidence,
                                        [(labels[j], float(probabilities[i, j])) for j in order[:3]],
                                        distance, int(where[i, top]), face.score, embeddings[i]))
        return faces

    def nearest_training(self, face: FacePrediction, person: str, k: int = 4) -> list[tuple[int, float]]:
        """The ``k`` training faces of ``person`` closest to ``face``: (gallery index, cosine distance), nearest first."""
        mine = np.flatnonzero(np.asarray(self.gallery_labels) == person)
        if face.embedding is None or not len(mine):
            return []
        distances = pairwise_distances(face.embedding[None, :], self.gallery[mine], "cosine")[0]
        order = np.argsort(distances)[:k]
        return [(int(mine[i]), float(distances[i])) for i in order]

    def predict(self, sources: Sequence[Source], truths: Sequence[str | None] | None = None,
                progress: Progress | None = None, root: Path | None = None) -> list[PhotoPrediction]:
        """Predict every face of every photo; an unusable photo gets ``error`` and the rest go on.

        Photos under ``root`` (their dataset or folder) are named relative to it, so no server path reaches
        a page, a download or a message.
        """
        results = self.pipeline.embed(sources, progress=progress)
        known = frozenset(person_key(label) for label in self.run.labels)
        photos = []
        for index, result in enumerate(results):
            photo = PhotoPrediction(relative_name(result.name, root), truths[index] if truths else None,
                                    error=result.error, found=result.found, known=known)
            if result.ok and result.faces:
                crops, embeddings = None, result.embeddings
                if self.finetuned:
                    crops = np.stack([aligned.crop for _, aligned in self.pipeline.faces(load_source(sources[index]))])
                    embeddings = self.run.head.embed(crops) if self.own_space else embeddings
                photo.faces = self._faces(result, embeddings, self._classify(result.embeddings, crops))
            photos.append(photo)
        return photos

    def annotate(self, image: np.ndarray, photo: PhotoPrediction, max_side: int | None = None) -> np.ndarray:
        """The photo with each face boxed and named (unknown faces in red); among several faces, the one that
        answers for the photo (face 0, the run's face choice) is tagged "answer:".

        With ``max_side`` the photo is shrunk first and the boxes with it, so gallery thumbnails
        get labels sized for the thumbnail rather than shrunk to illegibility.
        """
        factor = 1.0
        if max_side is not None:
            image, factor = downscale(image, max_side)
        several = len(photo.faces) > 1
        return draw_labels(image, [
            Label(tuple(round(v * factor) for v in f.box),  # type: ignore[arg-type]
                  ("answer: " if several and i == 0 else "") + (f"{f.label} {f.confidence:.0%}" if not f.unknown else UNKNOWN_LABEL),
                  UNKNOWN if f.unknown else KNOWN) for i, f in enumerate(photo.faces)
        ])


def relative_name(name: str, root: Path | None) -> str:
    """A photo's name relative to ``root`` with forward slashes (``test/alice/1.jpg``); just its file name when
    it lies outside ``root``; as it is without a root (uploads carry their own names)."""
    if root is None:
        return name
    try:
        return Path(name).relative_to(root).as_posix()
    except ValueError:
        return Path(name).name


def load_source(source: Source) -> np.ndarray:
    """The decoded photo of a source (a path, or a (name, bytes) upload)."""
    return load_image(source[1] if isinstance(source, tuple) else source)


def relabel(photos: Sequence[PhotoPrediction], rule: UnknownRule) -> list[PhotoPrediction]:
    """The same predictions judged by another unknown rule, without re-embedding anything.

    Each face keeps its confidence and distance, so moving a threshold only changes which
    faces are called unknown; the originals are left untouched.
    """
    return [replace(photo, faces=[
        replace(face, label=UNKNOWN_LABEL if rule.rejects(face.confidence, face.distance) else face.best_guess)
        for face in photo.faces]) for photo in photos]


def per_person(photos: Sequence[PhotoPrediction]) -> list[dict[str, Any]]:
    """Per true person: judged photos (labelled, with a face), how many got the right answer (for a stranger:
    rejected), accuracy, and faces rejected as unknown."""
    rows: dict[str, dict[str, Any]] = {}
    for photo in photos:
        if photo.correct is None or photo.truth is None:
            continue
        row = rows.setdefault(photo.truth, {"person": photo.truth, "photos": 0, "correct": 0, "unknown": 0})
        row["photos"] += 1
        row["correct"] += int(photo.correct)
        row["unknown"] += int(photo.predicted == UNKNOWN_LABEL)
    for row in rows.values():
        row["accuracy"] = row["correct"] / row["photos"]
    return [rows[name] for name in sorted(rows)]


CSV_COLUMNS = ("photo", "face", "box", "label", "text", "confidence", "top3", "distance", "truth", "correct", "verdict",
               "error", "note")


def predictions_csv(photos: Sequence[PhotoPrediction]) -> str:
    """Every prediction as CSV: one row per face, and one row for each photo without a face or unusable.

    ``correct`` is judged on the photo's chosen face (face 0) only, like :func:`accuracy`.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for photo in photos:
        correct = "" if photo.correct is None else str(photo.correct).lower()
        truth = photo.truth or ""
        if not photo.faces:
            writer.writerow([photo.name, "", "", "", "", "", "", "", truth, correct, photo.verdict,
                             photo.error or "no face found", ""])
        for index, face in enumerate(photo.faces):
            writer.writerow([
                photo.name, index, " ".join(str(v) for v in face.box), face.label, face.text,
                f"{face.confidence:.4f}", "; ".join(f"{name} {p:.4f}" for name, p in face.top3),
                "" if face.distance is None else f"{face.distance:.4f}", truth,
                correct if index == 0 else "", photo.verdict if index == 0 else "", "", photo.note,
            ])
    return buffer.getvalue()


def annotated_zip(predictor: Predictor, sources: Sequence[Source], photos: Sequence[PhotoPrediction]) -> bytes:
    """A zip of every usable photo with its faces boxed and named (JPEG, numbered so equal names never collide)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # JPEGs do not compress further
        for index, (source, photo) in enumerate(zip(sources, photos), 1):
            if photo.error is None:
                stem = Path(photo.name).stem or "photo"
                archive.writestr(f"{index:04d}_{stem}.jpg", encode_jpeg(predictor.annotate(load_source(source), photo)))
    return buffer.getvalue()


def accuracy(photos: Sequence[PhotoPrediction]) -> float | None:
    """Identification accuracy: the share of photos with a face of the run's own people whose chosen face was
    named right; None when there is none. Strangers are scored apart (:class:`Summary`'s rejection rate), photos
    without a face are counted apart (:attr:`Summary.no_face`)."""
    judged = [p.correct for p in photos if p.correct is not None and not p.stranger]
    return sum(judged) / len(judged) if judged else None


def predictor_for_run(run_id: str, rule: UnknownRule | None = None) -> Predictor:
    """Load a saved run with the same detector, alignment, face choice and backbone it was trained with."""

    run = load_run(run_id)
    config = run.config
    backbone = BACKBONES.get(config.backbone)
    if config.weights_id and backbone.weights_id != config.weights_id:
        raise ValueError(f"run {run_id} was trained with {config.backbone} weights {config.weights_id}, but this "
                         f"machine has {backbone.weights_id}; its predictions would be meaningless.")
    detector = DETECTORS.get(config.detector, **config.extra.get("detector_settings", {}))
    # a run from before the face choice existed was trained on each photo's largest face
    pipeline = Pipeline(detector, backbone, align=config.align, face_choice=config.extra.get("face_choice", "largest"),
                        crop=config.extra.get("crop", legacy_crop(config.align)))
    return Predictor(run, pipeline, rule)


def photo_sources(path: Path | str) -> tuple[list[Path], list[str | None]]:
    """Photos to predict: a dataset's labelled test split, or every image in a plain folder (unlabelled)."""
    return _sources_of(_scanned(path), Path(path))


def _scanned(path: Path | str) -> Dataset:
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"folder not found: {root}")
    return scan(root)


def _sources_of(dataset: Dataset, root: Path) -> tuple[list[Path], list[str | None]]:
    """:func:`photo_sources` of the already scanned folder ``root`` (callers that also fingerprint it scan once)."""
    if "test" in dataset.splits:
        records = [r for r in dataset.images if r.split == "test"]
        if not records:
            raise ValueError(f"the test split of {root.name} has no photos.")
        return [r.path for r in records], [r.person for r in records]
    if "train" in dataset.splits:
        raise ValueError(f"{root.name} is a dataset without a test/ split; predicting its training photos would "
                         "say nothing about the model. Add a test split or pick a folder of new photos.")
    photos = sorted(p for p in root.rglob("*") if p.is_file() and is_image_name(p.name))
    if not photos:
        raise ValueError(f"no photos found in {root.name}")
    return photos, [None] * len(photos)


def confusion_table(photos: Sequence[PhotoPrediction], labels: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """Rows: true person; columns: predicted person, then unknown and no face. Labelled photos only."""
    columns = [*labels, UNKNOWN_LABEL, "no face"]
    rows = sorted({p.truth for p in photos if p.truth is not None})
    table = [[0] * len(columns) for _ in rows]
    for photo in photos:
        if photo.truth is None or photo.error is not None:
            continue
        predicted = photo.predicted or "no face"
        if predicted in columns:
            table[rows.index(photo.truth)][columns.index(predicted)] += 1
    return rows, table


# --- the Predict page's engine: photo sets, the session store, filters and figures ---------------------


@dataclass(frozen=True)
class PhotoSet:
    """Photos to predict. ``key`` names them (folder and fingerprint, or content hashes): equal photos, equal key."""

    key: str
    label: str
    sources: list[Source]  # paths, or (name, bytes) for uploads and webcam shots
    truths: list[str | None]
    root: Path | None = None  # the folder the paths are in: photos are named relative to it

    @property
    def short_id(self) -> str:
        """Twelve hex digits of the key: short and safe inside a widget key."""
        return hashlib.sha256(self.key.encode()).hexdigest()[:12]


def dataset_photos(path: Path) -> PhotoSet:
    """A dataset's labelled test split (see :func:`photo_sources`); the key changes when its files change."""
    dataset = _scanned(path)
    paths, truths = _sources_of(dataset, Path(path))
    return PhotoSet(f"dataset:{path}:{fingerprint(dataset)}", f"the test split of {path.name}", list(paths), truths,
                    path)


def uploaded_photos(files: Sequence[tuple[str, bytes]], label: str) -> PhotoSet:
    """Uploaded ``(name, bytes)`` photos, unlabelled, keyed by their names and contents (a re-upload is not re-predicted)."""
    digest = hashlib.sha256()
    for name, data in files:
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return PhotoSet(f"upload:{digest.hexdigest()}", label, list(files), [None] * len(files))


class DatasetGone(ValueError):
    """The run's dataset folder is not on this server any more (moved, deleted, or the run was trained elsewhere),
    or not one this user may open."""

    def __init__(self, root: Path, reason: str | None = None) -> None:
        super().__init__(reason or f"the run's dataset ({root.name}) is not on this server any more")
        self.root = root


def run_dataset(predictor: Predictor) -> Path:
    """The folder the run was trained on; :class:`DatasetGone` when it is not here any more, or when the server
    serves browsers and it is a folder the user may not open (``core.data.layout.may_open``: the message then
    names no path)."""
    root = Path(predictor.run.config.dataset)
    if not predictor.run.config.dataset or not root.is_dir():
        raise DatasetGone(root)
    if not may_open(root):
        raise DatasetGone(root, "the run's dataset is neither one of your datasets nor one the server shares, "
                                "and opening other server folders is off")
    return root


def run_test_split(predictor: Predictor) -> PhotoSet:
    """The test split of the dataset the run was trained on: the default photos to judge a run by."""
    return dataset_photos(run_dataset(predictor))


def nearest_training_photos(predictor: Predictor, face: FacePrediction, k: int = 4) -> list[tuple[Path, float]]:
    """The ``k`` training photos of the face's best guess nearest to it: (file, cosine distance), nearest first.

    Empty when the run stores no training face of that person; :class:`DatasetGone` when it
    does but the photos themselves cannot be reached on this server.
    """
    nearest = predictor.nearest_training(face, face.best_guess, k)
    if not nearest:
        return []
    root = run_dataset(predictor)
    if not predictor.gallery_paths:  # an older run that stored no training paths
        raise DatasetGone(root)
    return [(root / predictor.gallery_paths[index], distance) for index, distance in nearest]


def face_crop(image: np.ndarray, face: FacePrediction) -> np.ndarray:
    """The face with a margin of a fifth of its size around it: a close-up that still shows hair and chin."""
    x, y, w, h = face.box
    mx, my = w // 5, h // 5
    return image[max(0, y - my):y + h + my, max(0, x - mx):x + w + mx]


KEEP = 4  # photo sets whose predictions a session keeps, oldest dropped first; a dropped one is predicted again


@dataclass
class Batch:
    """One predicted photo set: its sources and raw predictions (judged by the run's own rule, see :func:`relabel`)."""

    label: str
    sources: list[Source]
    photos: list[PhotoPrediction]
    thumbs: dict[tuple, bytes] = field(default_factory=dict)  # (index, size, face labels) → annotated JPEG

    def annotated_jpeg(self, predictor: Predictor, index: int, photo: PhotoPrediction, size: int) -> bytes:
        """Photo ``index`` boxed with ``photo``'s current labels, shrunk to ``size``; kept so paging stays instant."""
        key = (index, size, tuple(face.label for face in photo.faces))
        if key not in self.thumbs:
            self.thumbs[key] = encode_jpeg(predictor.annotate(load_source(self.sources[index]), photo, max_side=size))
        return self.thumbs[key]


def stored_batch(store: MutableMapping[str, Batch], run_id: str, photos: PhotoSet,
                 predict: Callable[[PhotoSet], list[PhotoPrediction]], keep: int = KEEP) -> Batch:
    """The predictions of ``photos`` by run ``run_id``, made by ``predict`` only when ``store`` lacks them.

    Filters, thresholds and paging then never re-embed anything; only the ``keep`` newest
    sets stay, so a session that tries many uploads does not hold them all in memory.
    """
    key = f"{run_id}|{photos.key}"
    if key not in store:
        store[key] = Batch(photos.label, photos.sources, predict(photos))
        for old in list(store)[:-keep]:
            del store[old]
    return store[key]


EVERYONE = "Everyone"
SHOWS: dict[str, Callable[[PhotoPrediction, float], bool]] = {  # name → test of a photo, given "low confidence"
    "All photos": lambda photo, low: True,
    "Correct": lambda photo, low: photo.correct is True,
    "Incorrect": lambda photo, low: photo.correct is False,
    "With unknown faces": lambda photo, low: any(face.unknown for face in photo.faces),
    "Low confidence": lambda photo, low: any(face.confidence < low for face in photo.faces),
    "No face found": lambda photo, low: photo.no_face,
    "Unusable": lambda photo, low: photo.error is not None,
}
JUDGED_SHOWS = ("Correct", "Incorrect")  # meaningless without labels
SORTS = ("File order", "Confidence: lowest first", "Confidence: highest first")


@dataclass(frozen=True)
class PhotoFilter:
    """Which predicted photos to show, and in which order."""

    person: str = EVERYONE  # a true person or best guess, or everyone
    show: str = "All photos"  # a key of SHOWS
    low: float = 0.8  # "Low confidence" means a face below this
    order: str = SORTS[0]


def people_in(photos: Sequence[PhotoPrediction]) -> list[str]:
    """Everyone a filter can pick: the true persons and every face's best guess, sorted."""
    return sorted({p.truth for p in photos if p.truth} | {f.best_guess for p in photos for f in p.faces})


def show_options(photos: Sequence[PhotoPrediction]) -> list[str]:
    """The SHOWS that make sense for these photos: right and wrong only when some photo is labelled."""
    labelled = any(p.truth is not None for p in photos)
    return [show for show in SHOWS if labelled or show not in JUDGED_SHOWS]


def filter_photos(photos: Sequence[PhotoPrediction], chosen: PhotoFilter) -> list[int]:
    """Indices of the photos ``chosen`` lets through, in its order (by the answer's confidence, faceless photos last)."""
    test = SHOWS[chosen.show]
    kept = [i for i, photo in enumerate(photos)
            if (chosen.person == EVERYONE or person_key(photo.truth or "") == person_key(chosen.person)
                or any(person_key(f.best_guess) == person_key(chosen.person) for f in photo.faces))
            and test(photo, chosen.low)]
    if chosen.order == SORTS[0]:
        return kept
    sign = -1.0 if chosen.order == SORTS[2] else 1.0

    def rank(index: int) -> tuple[bool, float]:
        confidence = photos[index].confidence
        return (True, 0.0) if confidence is None else (False, sign * confidence)

    return sorted(kept, key=rank)


@dataclass(frozen=True)
class Summary:
    """The headline figures of a prediction set: what the page shows above the gallery and the CLI prints."""

    photos: int
    faces: int
    unknown_faces: int
    no_face: int
    judged: int  # labelled photos of the run's people with a face: those accuracy counts
    correct: int
    accuracy: float | None  # identification accuracy over the run's people
    errors: list[tuple[str, str]]  # (photo, why it could not be used)
    strangers: list[str]  # labelled persons the run does not know: 'unknown' is their right answer
    capped: list[tuple[str, str]] = field(default_factory=list)  # (photo, what the face cap left out)
    stranger_photos: int = 0  # judged photos of strangers
    rejected: int = 0  # of those, rejected as unknown (the right answer)
    no_face_photos: list[str] = field(default_factory=list)  # usable photos without a face, never judged

    @property
    def rejection_rate(self) -> float | None:
        """Strangers rejected / strangers; None without a judged stranger."""
        return self.rejected / self.stranger_photos if self.stranger_photos else None

    @property
    def false_accept_rate(self) -> float | None:
        """Strangers named as one of the run's people / strangers; None without a judged stranger."""
        return 1.0 - self.rejected / self.stranger_photos if self.stranger_photos else None


def summarize(photos: Sequence[PhotoPrediction], known: Sequence[str]) -> Summary:
    """The figures of ``photos`` as judged now (after :func:`relabel`), open-set: ``known`` are the run's people,
    scored by identification accuracy; anyone else is a stranger, scored by how often they are rejected."""
    keys = frozenset(person_key(name) for name in known)
    photos = [replace(photo, known=keys) for photo in photos]
    faces = [face for photo in photos for face in photo.faces]
    judged = [p for p in photos if p.correct is not None and not p.stranger]
    strangers = [p for p in photos if p.correct is not None and p.stranger]
    return Summary(
        photos=len(photos), faces=len(faces), unknown_faces=sum(face.unknown for face in faces),
        no_face=sum(p.no_face for p in photos), judged=len(judged), correct=sum(bool(p.correct) for p in judged),
        accuracy=accuracy(photos), errors=[(p.name, p.error) for p in photos if p.error is not None],
        strangers=sorted({p.truth for p in photos if p.stranger and p.truth is not None}),
        capped=[(p.name, p.note) for p in photos if p.note],
        stranger_photos=len(strangers), rejected=sum(bool(p.correct) for p in strangers),
        no_face_photos=[p.name for p in photos if p.no_face])
