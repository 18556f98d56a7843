"""Stage 3 driver — from photos to face embeddings, batched and cached.

``Pipeline`` ties a detector, the alignment settings (rotation, crop) and a backbone together;
``Pipeline.embed`` turns photos into per-photo results (every face, its box and its
embedding). Results are cached on disk keyed by the photo's content hash and
everything that changes the numbers (detector and its settings, rotation and crop,
backbone and its weights checksum), so a second pass over a dataset computes
nothing. Each cache entry is one file written atomically (temp file + rename),
which makes concurrent writers from threads or processes safe without locks: the
last complete write wins, and a reader never sees half a file. A corrupt entry is
deleted and recomputed.

Embedding a dataset takes minutes, so it can be stopped between photos (``should_stop``),
and :meth:`EmbeddingCache.missing` says beforehand how much of it is left to compute.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.config import UNWRITABLE, cache_dir, limits
from core.data.layout import scan
from core.files import write_bytes_atomic
from core.images import ImageError, content_hash, load_image, read_file
from core.pipeline.alignment import DEFAULT_CROP, AlignedFace, check_crop
from core.pipeline.backbones.base import Backbone
from core.pipeline.detection.base import Detector, Face, chunk_full
from core.pipeline.face_choice import DEFAULT_FACE_CHOICE, check_face_choice, order_faces

Progress = Callable[[int, int], None]
Source = Path | str | bytes | tuple[str, bytes]  # a path, raw bytes, or (display name, bytes)


class Stopped(Exception):
    """``should_stop`` ended an embedding early; the photos embedded before it are cached.

    An exception rather than a short result: a caller that reads the results would otherwise
    silently work on part of its photos.
    """


@dataclass
class ImageResult:
    """Every face found in one photo with its embedding; ``error`` set when the photo is unusable."""

    name: str
    faces: list[Face] = field(default_factory=list)
    embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    aligned: list[bool] = field(default_factory=list)
    angles: list[float] = field(default_factory=list)
    error: str | None = None
    cached: bool = False
    found: int = 0  # faces the detector found: more than ``faces`` when the face cap (limits().max_faces) applied

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def note(self) -> str:
        """What the face cap left out ("49 faces found, the 20 largest were used"), or ""."""
        return faces_note(self.found, len(self.faces))


def faces_note(found: int, used: int) -> str:
    """Say so when a photo had more faces than the cap let through; "" when every face was used."""
    if found <= used:
        return ""
    return f"{found} faces found, " + ("the largest was used" if used == 1 else f"the {used} largest were used")


class EmbeddingCache:
    """One ``.npz`` per (photo, pipeline) under ``cache_dir()/embeddings``."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_dir() / "embeddings"

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str, name: str) -> ImageResult | None:
        """The cached result, or None when absent or unreadable (a corrupt entry is removed)."""
        path = self._path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                embeddings = data["embeddings"].astype(np.float32)
            faces = [Face.from_dict(f) for f in meta["faces"]]
            if len(faces) != len(embeddings) and len(faces):
                raise ValueError("face count does not match embeddings")
            return ImageResult(name, faces, embeddings, meta["aligned"], meta["angles"], cached=True,
                               found=int(meta.get("found", len(faces))))
        except (OSError, ValueError, KeyError, json.JSONDecodeError, EOFError):
            path.unlink(missing_ok=True)
            return None

    def put(self, key: str, result: ImageResult) -> None:
        """Store a result atomically; concurrent writers of the same key are harmless.

        On a read-only or full home the result is only not kept (the caller still gets it; every page says why).
        """
        path = self._path(key)
        meta = {"faces": [f.to_dict() for f in result.faces], "aligned": result.aligned, "angles": result.angles,
                "found": result.found}
        buffer = io.BytesIO()
        np.savez(buffer, embeddings=result.embeddings, meta=np.array(json.dumps(meta)))
        try:
            write_bytes_atomic(path, buffer.getvalue(), suffix=".npz")
        except OSError as exc:
            if exc.errno not in UNWRITABLE:
                raise

    def missing(self, paths: Iterable[Path], pipeline: str) -> list[Path]:
        """The photos among ``paths`` with no entry yet for ``pipeline`` (a :func:`pipeline_key`).

        Only whether the entry exists is checked, never its content: the Train page asks on every
        rerun, and opening thousands of entries would take seconds (a corrupt one is found, and
        recomputed, when embedding). Unreadable photos are left out: embedding skips them.
        """
        out = []
        for path in paths:
            try:
                digest = _file_hash(path)
            except (OSError, ImageError):
                continue
            if not self._path(photo_cache_key(digest, pipeline)).exists():
                out.append(path)
        return out


@functools.lru_cache(maxsize=65536)
def _hash_of(path: str, size: int, mtime_ns: int) -> str:
    return content_hash(read_file(path))


def _file_hash(path: Path) -> str:
    """The photo's content hash, remembered while its size and modification time stay the same.

    Asking the cache about a dataset repeatedly (each rerun of the Train page) then reads each photo once.
    """
    stat = path.stat()
    return _hash_of(str(path), stat.st_size, stat.st_mtime_ns)


def _read(source: Source) -> tuple[str, bytes]:
    if isinstance(source, tuple):
        return source
    if isinstance(source, bytes):
        return "upload", source
    return str(source), read_file(source)


def pipeline_key(detector_key: str, align: bool, backbone_key: str, face_choice: str = DEFAULT_FACE_CHOICE,
                 crop: str = DEFAULT_CROP) -> str:
    """Identity of a pipeline: its detector and backbone with all their settings, the alignment switch, the
    pixel limit (a JPEG above it is decoded at reduced scale, so the limit changes its boxes) and the face choice
    (it decides which face comes first). "largest" adds nothing: entries cached before the rule existed used it."""
    choice = "" if face_choice == "largest" else f"|faces={face_choice}"
    return f"{detector_key}|{_alignment_key(align, crop)}|{backbone_key}|pixels={limits().max_image_pixels}{choice}"


def _alignment_key(align: bool, crop: str) -> str:
    """The rotation and crop part of a pipeline's key.

    "align=True" (the backbone's crop, rotated) means what it always meant and stays, so those
    cache entries stay valid. "align=False" once meant the box crop and is never written again:
    its entries are never reused for "same crop, not rotated".
    """
    if align and crop == DEFAULT_CROP:
        return "align=True"
    return f"rotate={align}|crop={crop}"


def photo_cache_key(photo_hash: str, pipeline: str) -> str:
    """The embedding cache's key for one photo through one pipeline (a :func:`pipeline_key`)."""
    return hashlib.sha256(f"{photo_hash}|{pipeline}".encode()).hexdigest()


@dataclass
class Pipeline:
    """detect → align → represent, with the settings that identify its results.

    ``face_choice`` (a rule of :mod:`core.pipeline.face_choice`) orders each photo's faces: face 0 is the one a
    photo trains, is named by and is verified with.
    """

    detector: Detector
    backbone: Backbone
    align: bool = True
    batch_size: int = 32
    face_choice: str = DEFAULT_FACE_CHOICE
    crop: str = DEFAULT_CROP  # which square is cut (core.pipeline.alignment.CROPS); ``align`` only rotates it

    def __post_init__(self) -> None:
        check_face_choice(self.face_choice)
        check_crop(self.crop)

    @property
    def key(self) -> str:
        """See :func:`pipeline_key`."""
        return pipeline_key(self.detector.cache_key(), self.align, self.backbone.cache_key(), self.face_choice,
                            self.crop)

    def cache_key(self, photo_hash: str) -> str:
        return photo_cache_key(photo_hash, self.key)

    def faces(self, image: np.ndarray, keep_steps: bool = False) -> list[tuple[Face, AlignedFace]]:
        """Detect and align the faces of one decoded image, the chosen face first, at most ``limits().max_faces``."""
        return self.faces_many([image], keep_steps)[0]

    def faces_many(self, images: Sequence[np.ndarray], keep_steps: bool = False) -> list[list[tuple[Face, AlignedFace]]]:
        """:meth:`faces` for several images, detected in one batch where the detector can."""
        return [faces for faces, _ in self.faces_found(images, keep_steps)]

    def faces_found(self, images: Sequence[np.ndarray],
                    keep_steps: bool = False) -> list[tuple[list[tuple[Face, AlignedFace]], int]]:
        """:meth:`faces_many`, each with how many faces the detector found.

        Only the ``limits().max_faces`` largest faces are aligned and embedded (a tiled photo of 49 faces
        took 23 s, and nothing on a page reads 49 faces of one photo); those are then ordered by ``face_choice``.
        """
        self.backbone.warm(len(images))  # loads beside the detection (a photo usually shows one face)
        cap = limits().max_faces
        cut = self.backbone.align if self.crop == DEFAULT_CROP else self.backbone.box_crop
        return [([(face, cut(image, face, rotate=self.align, keep_steps=keep_steps))
                  for face in order_faces(found[:cap], image.shape[1], image.shape[0], self.face_choice)], len(found))
                for image, found in zip(images, self.detector.detect_many(images))]

    def embed(self, sources: Sequence[Source], progress: Progress | None = None,
              cache: EmbeddingCache | None = None, should_stop: Callable[[], bool] | None = None) -> list[ImageResult]:
        """Embed every face of every photo, reusing the cache; one result per source, in order.

        The cache is asked first, photo by photo: a photo found there costs no model at all, so a fully
        cached pass never loads the detector's network. The others are detected in chunks (MTCNN runs
        same-sized photos as one batch: 64 glint crops 2.5 s → 0.4 s) and their faces embedded in
        batches across photos on a background thread, while the next chunk is detected. Unusable
        photos get ``error`` set and the rest go on. ``should_stop()`` is asked before each photo is
        read: when true, the photos read so far are detected, embedded and cached (not lost to the
        stop: a stop waits for the chunk being detected and for the faces already cut) and :class:`Stopped` is raised.
        """
        cache = cache if cache is not None else EmbeddingCache()
        total = len(sources)
        results: list[ImageResult] = []
        chunk: list[tuple[ImageResult, str, np.ndarray]] = []  # decoded, not yet detected: (result, cache key, image)
        faces: list[tuple[ImageResult, str, list[np.ndarray]]] = []  # cut, not yet embedded: (result, key, crops)
        finished = 0

        def report() -> None:
            nonlocal finished
            finished += 1
            if progress:
                progress(finished, total)

        def detect_chunk() -> None:
            if not chunk:
                return
            for (result, key, _), (found, count) in zip(chunk, self._faces_each([image for _, _, image in chunk])):
                if isinstance(found, ImageError):
                    result.error = str(found)
                else:
                    result.faces, result.found = [f for f, _ in found], count
                    result.aligned, result.angles = [a.aligned for _, a in found], [float(a.angle) for _, a in found]
                    faces.append((result, key, [a.crop for _, a in found]))
                report()
            chunk.clear()

        with _Describer(self.backbone, cache) as describer:
            for done, source in enumerate(sources):
                if should_stop is not None and should_stop():
                    detect_chunk()
                    describer.submit(faces, self.batch_size, last=True)
                    describer.wait()
                    raise Stopped(f"stopped after {done} of {total} photos")
                name = source[0] if isinstance(source, tuple) else ("upload" if isinstance(source, bytes) else str(source))
                try:
                    name, data = _read(source)
                    key = self.cache_key(content_hash(data))
                    hit = _capped(cache.get(key, name))
                    if hit is None:
                        image = load_image(data)
                except ImageError as exc:
                    hit = ImageResult(name, error=str(exc))
                if hit is not None:
                    results.append(hit)
                    report()
                    continue
                results.append(ImageResult(name))
                chunk.append((results[-1], key, image))
                if chunk_full([image for _, _, image in chunk]):
                    detect_chunk()
                    describer.submit(faces, self.batch_size)
            detect_chunk()
            describer.submit(faces, self.batch_size, last=True)
        return results

    def _faces_each(self, images: list[np.ndarray]) -> list[tuple[list[tuple[Face, AlignedFace]] | ImageError, int]]:
        """:meth:`faces_found` for a chunk; when a photo in it fails, each photo alone, so only that one is lost."""
        try:
            return list(self.faces_found(images))
        except ImageError:
            out: list[tuple[list[tuple[Face, AlignedFace]] | ImageError, int]] = []
            for image in images:
                try:
                    out.append(self.faces_found([image])[0])
                except ImageError as exc:
                    out.append((exc, 0))
            return out


QUEUED_CROP_BYTES = 96_000_000  # cut faces waiting for the backbone (~1,400 dlib chips): detection runs ahead meanwhile


class _Describer:
    """Embeds batches of cut faces on one background thread and caches each photo's result, so the backbone
    (an ONNX Runtime or Keras network, or dlib's worker processes) runs while the next photos are detected.

    Detection may run ahead of it by QUEUED_CROP_BYTES of crops: a cold process detects while the backbone
    loads (a Keras one imports TensorFlow: about 5 s), instead of waiting after its first chunk. ``submit``
    waits only when more than that is queued. An error in a batch is raised by the next ``submit`` or ``wait``.
    """

    def __init__(self, backbone: Backbone, cache: EmbeddingCache) -> None:
        self.backbone, self.cache = backbone, cache
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="facelab-describe")
        self._queued: deque[tuple[Future[None], int]] = deque()  # oldest first: (batch, bytes of its crops)

    def submit(self, faces: list[tuple[ImageResult, str, list[np.ndarray]]], batch_size: int,
               last: bool = False) -> None:
        """Queue these photos' faces for embedding and caching in batches of ``batch_size`` crops (a photo's faces
        stay in one batch, which may then be larger). The photos are taken from ``faces``; those that do not fill
        a batch stay there for the next call unless this is the ``last``."""
        batches: list[list[tuple[ImageResult, str, list[np.ndarray]]]] = [[]]
        size = 0  # crops in the last batch
        for item in faces:
            if size >= batch_size:
                batches.append([])
                size = 0
            batches[-1].append(item)
            size += len(item[2])
        if not last and size < batch_size:
            faces[:] = batches.pop()
        else:
            faces.clear()
        for batch in filter(None, batches):
            crop_bytes = sum(crop.nbytes for _, _, group in batch for crop in group)
            self._queued.append((self._pool.submit(self._describe, batch), crop_bytes))
        self._settle(QUEUED_CROP_BYTES)

    def wait(self) -> None:
        """Until every queued batch is embedded and cached."""
        self._settle(0)

    def _settle(self, most: int) -> None:
        """Collect finished batches (raising their errors) and wait for the oldest while more than ``most`` bytes
        of crops are queued."""
        while self._queued and (self._queued[0][0].done() or sum(size for _, size in self._queued) > most):
            self._queued.popleft()[0].result()

    def _describe(self, batch: list[tuple[ImageResult, str, list[np.ndarray]]]) -> None:
        crops = [crop for _, _, group in batch for crop in group]
        dim = self.backbone.embedding_dim
        vectors = self.backbone.embed(np.stack(crops)) if crops else np.zeros((0, dim), np.float32)
        start = 0
        for result, key, group in batch:
            result.embeddings = np.asarray(vectors[start:start + len(group)], np.float32).reshape(len(group), dim)
            start += len(group)
            self.cache.put(key, result)

    def __enter__(self) -> _Describer:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            if kind is None:
                self.wait()  # the last batch's error is the caller's
        finally:
            for future, _ in self._queued:
                future.cancel()  # after an error, what is still queued is not worth embedding
            self._pool.shutdown(wait=True)


def _capped(hit: ImageResult | None) -> ImageResult | None:
    """A cached result under the current face cap: cut down to it, or None (recompute) when it was stored
    under a lower cap and lacks faces the current one lets through.

    Cutting keeps the ``cap`` largest faces in their stored (face-choice) order, as a fresh pass would.
    """
    if hit is None:
        return None
    cap = limits().max_faces
    if len(hit.faces) < min(cap, hit.found):
        return None
    if len(hit.faces) > cap:
        keep = sorted(sorted(range(len(hit.faces)), key=lambda i: -hit.faces[i].area)[:cap])
        hit.faces, hit.embeddings = [hit.faces[i] for i in keep], hit.embeddings[keep]
        hit.aligned, hit.angles = [hit.aligned[i] for i in keep], [hit.angles[i] for i in keep]
    return hit


class Throughput:
    """Images per second over a run, for progress messages and the CLI."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def rate(self, count: int) -> float:
        elapsed = time.perf_counter() - self.start
        return count / elapsed if elapsed > 0 else 0.0


@dataclass
class SplitEmbeddings:
    """One embedding per usable photo of a split (its chosen face), and every photo that was not usable."""

    embeddings: np.ndarray
    labels: list[str | None]
    paths: list[str]
    boxes: list[tuple[int, int, int, int]]
    no_face: list[str] = field(default_factory=list)
    many_faces: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def photos(self) -> int:
        return len(self.paths) + len(self.no_face) + len(self.errors)


def embed_dataset(root: Path | str, pipeline: Pipeline, splits: Sequence[str] | None = None,
                  progress: Progress | None = None, cache: EmbeddingCache | None = None,
                  should_stop: Callable[[], bool] | None = None) -> dict[str, SplitEmbeddings]:
    """Embed the chosen face (face 0) of every photo in the dataset's splits, listing photos with no or many faces.

    A photo without a face is skipped and listed — never silently dropped. ``should_stop``: see
    :meth:`Pipeline.embed` (raises :class:`Stopped`).
    """

    dataset = scan(root)
    records = [r for r in dataset.images if splits is None or r.split in splits]
    results = pipeline.embed([r.path for r in records], progress=progress, cache=cache, should_stop=should_stop)
    out: dict[str, SplitEmbeddings] = {}
    vectors: dict[str, list[np.ndarray]] = {}
    for record, result in zip(records, results):
        split = out.setdefault(record.split, SplitEmbeddings(np.zeros((0, pipeline.backbone.embedding_dim), np.float32), [], [], []))
        name = dataset.relative(record.path)
        if not result.ok:
            split.errors[name] = result.error or "unusable"
        elif not result.faces:
            split.no_face.append(name)
        else:
            if len(result.faces) > 1:
                split.many_faces.append(name)
            split.labels.append(record.person)
            split.paths.append(name)
            split.boxes.append(result.faces[0].box)
            vectors.setdefault(record.split, []).append(result.embeddings[0])
    for name, split in out.items():
        if vectors.get(name):
            split.embeddings = np.stack(vectors[name]).astype(np.float32)
    return out
