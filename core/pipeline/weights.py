"""Finding, downloading and checking the pretrained weight files backbones need.

Generic: each backbone plug-in declares its files (:class:`WeightFile`) by calling
:func:`register` when its module is imported, so this module names no model. Code that needs
every file (the ``weights`` command) lists the backbones first (``BACKBONES.entries()``).

Weight files are hundreds of megabytes fetched from third-party release pages, so
everything here is defensive: downloads stream into a temporary file that only
becomes the real file once complete and checked, a file's checksum is pinned on
first download (``<file>.sha256`` sidecar) and verified on later loads, and a file
that is not a usable HDF5 weights file is refused with a message naming it, so
random weights are never presented as a face model.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import serving_browsers, weights_dir
from core.files import write_atomic

_CHUNK = 1 << 20


class WeightsError(RuntimeError):
    """A weight file that is missing, cannot be downloaded or is not what it claims to be."""


@dataclass(frozen=True)
class WeightFile:
    """One weight file a backbone declares: where it comes from and how to recognise a sane copy."""

    name: str
    backbone: str
    description: str
    model: str = ""  # the model's name in messages ("VGG-Face"); the backbone's name when empty
    url: str | None = None  # None: shipped inside a package (see ``locate``), nothing to download
    sha256: str | None = None  # None when no checksum is published; the first download's is pinned in a sidecar
    size_hint: int = 0  # approximate size in bytes, for messages and progress before the server answers
    min_layers: int = 0  # HDF5 files: layers with weights a genuine copy has (a quick sanity check)
    runs_backbone: bool = True  # False for a partial file (e.g. convolutions only) the backbone cannot embed with
    env: str | None = None  # an environment variable that may give this file's path
    cache_dirs: tuple[str, ...] = ()  # other tools' download folders (relative to the user's home) worth searching
    layers_match: Callable[[Mapping[str, Any]], bool] | None = None  # is an HDF5 file with these layers a copy of it?
    locate: Callable[[], Path] | None = None  # where a file shipped inside a package is (ImportError when absent)
    missing_hint: str = ""  # what to do when a shipped file is absent


KNOWN: dict[str, WeightFile] = {}  # file name → declaration, in registration order (a backbone's preferred first)

ProgressCallback = Callable[[int, int], None]


def register(*files: WeightFile) -> None:
    """Declare weight files (called by backbone modules at import)."""
    for file in files:
        KNOWN[file.name] = file


def files_for(backbone: str) -> list[WeightFile]:
    """The files ``backbone`` can run on, preferred first."""
    return [f for f in KNOWN.values() if f.backbone == backbone and f.runs_backbone]


def known(name: str) -> WeightFile:
    """The declaration of a weight file (or of a backbone's preferred file), or a ValueError listing them."""
    preferred = files_for(name)
    if preferred:
        return preferred[0]
    if name not in KNOWN:
        backbones = sorted({f.backbone for f in KNOWN.values() if f.url})
        raise ValueError(f"unknown weight file '{name}'; known: {', '.join([*backbones, *KNOWN])}")
    return KNOWN[name]


def search_dirs(entry: WeightFile) -> list[Path]:
    """Folders searched for ``entry``, in order (after any explicit path): other tools' caches, then FaceLab's."""
    return [*(Path.home() / folder for folder in entry.cache_dirs), weights_dir()]


def _shown(path: Path) -> str:
    """``path`` as a message shows it: whole on the command line, its file name alone to browser users (the
    server's folders are not theirs to act on, and tell a stranger how the machine is laid out)."""
    return path.name if serving_browsers() else str(path)


def _explicit(path: str | Path, entry: WeightFile) -> Path:
    explicit = Path(path).expanduser()
    if not explicit.is_file():
        also = f" or {entry.env}" if entry.env else ""
        raise WeightsError(f"weights file {_shown(explicit)} does not exist (check the path{also}).")
    return explicit.resolve()


def find(name: str, path: str | Path | None = None) -> Path | None:
    """Where the weight file ``name`` is on this machine, or None.

    Order: ``path`` when given, then the file's environment variable, then where a package ships
    it, then other tools' download folders and the FaceLab weights folder. An explicit path that
    does not exist is an error rather than a silent fall-back to another file.
    """
    entry = known(name)
    if path is not None:
        return _explicit(path, entry)
    env = os.environ.get(entry.env, "").strip() if entry.env else ""
    if env:
        return _explicit(env, entry)
    if entry.locate is not None:
        try:
            shipped = entry.locate()
        except ImportError:
            return None
        return shipped.resolve() if shipped.is_file() else None
    for folder in search_dirs(entry):
        candidate = folder / entry.name
        if candidate.is_file():
            return candidate.resolve()
    return None


def find_for_backbone(backbone: str) -> Path | None:
    """The first weight file found that ``backbone`` can run on."""
    for entry in files_for(backbone):
        found = find(entry.name)
        if found is not None:
            return found
    return None


def missing_message(backbone: str) -> str:
    """What to do when a backbone's weights are absent (shown by the pages, the CLI and exceptions).

    On the command line: the command to run and the folders searched, for the server's owner. To browser users
    (``serving_browsers``), who can run neither, one sentence meant for them: no server path, no shell command.
    """
    files = files_for(backbone)
    if not files:
        raise ValueError(f"the {backbone} backbone declares no weight file.")
    first, others = files[0], [f.name for f in files[1:]]
    if serving_browsers():
        size = f" (about {first.size_hint / 1e6:.0f} MB)" if first.size_hint else ""
        action = "download them" if first.url else "install them"
        return f"{first.model or backbone} weights not found on this server; the server's owner can {action}{size}."
    if first.locate is not None:
        return f"{first.model or backbone} weights not found: {first.missing_hint or first.description}"
    where = " or ".join(str(d) for d in [weights_dir(), *search_dirs(first)[:-1]])
    alternatives = f" (or {', '.join(others)})" if others else ""
    env = f", or set {first.env} to its path" if first.env else ""
    return (f"{first.model or backbone} weights not found: run `python -m core weights --download {backbone}` or put "
            f"{first.name}{alternatives} in {where}{env}.")


# --- checksums -----------------------------------------------------------------------------------

_hash_cache: dict[tuple[int, int, int, int], str] = {}
_hash_lock = threading.Lock()


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, cached per (device, inode, size, mtime) since weight files are large.

    The file's identity comes from one ``stat`` (resolving the path took ten times as long, on every ONNX network
    call of MTCNN's cascade)."""
    stat = path.stat()
    key = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    with _hash_lock:
        if key in _hash_cache:
            return _hash_cache[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    with _hash_lock:
        _hash_cache[key] = digest.hexdigest()
    return _hash_cache[key]


def sidecar(path: Path) -> Path:
    """The file holding the checksum pinned for ``path`` at download or install time."""
    return path.with_name(path.name + ".sha256")


def pinned_sha256(path: Path) -> str | None:
    """The checksum recorded next to ``path``, if any (``sha256sum`` format: hex first)."""
    try:
        text = sidecar(path).read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return None
    return text[0].lower() if text else None


def _write_atomic(target: Path, write: Callable[[Any], None], check: Callable[[Path], None] | None = None) -> None:
    """Atomic write with a ``.<name>.…part`` temp file, recognisable as an unfinished download."""
    write_atomic(target, write, check=check, prefix=f".{target.name}.", suffix=".part")


def _pin(path: Path, digest: str) -> None:
    _write_atomic(sidecar(path), lambda out: out.write(f"{digest}  {path.name}\n".encode()))


def check_file(path: Path, name: str | None = None) -> str:
    """Check ``path`` against the published checksum of ``name`` or its pinned sidecar; returns its sha256."""
    digest = sha256_of(path)
    expected = KNOWN[name].sha256 if name in KNOWN else None
    source = "the published checksum"
    if expected is None:
        expected, source = pinned_sha256(path), f"the checksum pinned in {sidecar(path).name}"
    if expected is not None and digest != expected:
        raise WeightsError(f"{_shown(path)}: sha256 {digest[:16]}… does not match {source} ({expected[:16]}…); "
                           "the file is damaged or was replaced: delete it and download it again.")
    return digest


# --- HDF5 sanity ---------------------------------------------------------------------------------

@contextmanager
def open_weights_h5(path: Path) -> Iterator[Any]:
    """Open a Keras-2 style weights file at its layer-holding group, with errors that name the file."""
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsError(f"{path.name}: not a readable HDF5 weights file "
                           f"(truncated or wrong format: {exc}).") from exc
    try:
        group = handle
        if "layer_names" not in group.attrs and "model_weights" in group:
            group = group["model_weights"]
        yield group
    finally:
        handle.close()


def _text(value: Any) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def layer_weights(group: Any, path: Path) -> dict[str, list[Any]]:
    """Layer name → its weight datasets in saved order, for layers that have weights, in file order.

    Raises :class:`WeightsError` when the file has no Keras layer table or a listed weight is missing.
    """
    if "layer_names" in group.attrs:
        names = [_text(n) for n in group.attrs["layer_names"]]
    else:
        names = list(group.keys())
    if not names:
        raise WeightsError(f"{path.name}: HDF5 file holds no Keras layers; it is not a weights file.")
    layers: dict[str, list[Any]] = {}
    try:
        for name in names:
            weight_names = [_text(w) for w in group[name].attrs.get("weight_names", [])]
            if weight_names:
                layers[name] = [group[name][w] for w in weight_names]
    except (KeyError, OSError) as exc:
        raise WeightsError(f"{path.name}: damaged layer table ({exc}).") from exc
    return layers


def file_kind(path: Path) -> str:
    """Which declared file ``path`` is a copy of, judged by its HDF5 layers (users rename downloads)."""
    with open_weights_h5(path) as group:
        layers = layer_weights(group, path)
    for entry in KNOWN.values():
        if entry.layers_match is not None and entry.layers_match(layers):
            return entry.name
    raise WeightsError(f"{path.name}: not a weights file FaceLab knows ({len(layers)} layers with weights); "
                       "pass the file's name explicitly if it is one.")


def check_h5(path: Path, name: str) -> None:
    """Quick check that ``path`` looks like a genuine copy of the weight file ``name`` (HDF5, enough layers)."""
    entry = known(name)
    with open_weights_h5(path) as group:
        count = len(layer_weights(group, path))
    if count < entry.min_layers:
        raise WeightsError(f"{path.name}: has {count} layers with weights, {entry.name} has {entry.min_layers}; "
                           "it is not that weights file.")


# --- getting files -------------------------------------------------------------------------------

def _offline_error(entry: WeightFile, url: str, reason: object) -> WeightsError:
    if serving_browsers():
        return WeightsError(f"could not download {entry.name} ({reason}); the server may have no internet access. "
                            "Its owner can download the file by hand and install it.")
    return WeightsError(f"could not download {entry.name} from {url} ({reason}). Download it by hand and put it in "
                        f"{weights_dir()}, or install it with `python -m core weights --from PATH`.")


def download(name: str, progress: ProgressCallback | None = None, url: str | None = None) -> Path:
    """Download a known weight file into the weights folder and return its path.

    ``url`` overrides the table (a mirror, or a ``file://`` copy). The file appears only once
    complete, of the announced length, matching its checksum when one is known, and readable
    as HDF5 with the expected layers; its sha256 is then pinned in a sidecar.
    """
    entry = known(name)
    source = url or entry.url
    if source is None:
        raise WeightsError(f"{entry.name} is not downloaded: {entry.missing_hint or entry.description}")
    target = weights_dir() / entry.name
    digest = hashlib.sha256()
    done = 0

    def stream(out: Any) -> None:
        nonlocal done
        try:
            response = urllib.request.urlopen(source, timeout=60)  # noqa: S310 - http(s) or file:// by design
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise _offline_error(entry, source, getattr(exc, "reason", exc)) from exc
        with response:
            total = int(response.headers.get("Content-Length") or 0) or entry.size_hint
            try:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                raise WeightsError(f"download of {entry.name} from {source} broke after {done} bytes "
                                   f"({exc}); nothing was saved, try again.") from exc
            announced = int(response.headers.get("Content-Length") or 0)
        if announced and done != announced:
            raise WeightsError(f"download of {entry.name} stopped at {done} of {announced} bytes; nothing was saved.")
        if entry.sha256 and digest.hexdigest() != entry.sha256:
            raise WeightsError(f"downloaded {entry.name} has sha256 {digest.hexdigest()[:16]}…, expected "
                               f"{entry.sha256[:16]}…; the download was corrupted or the file changed upstream.")

    _write_atomic(target, stream, check=lambda temp: check_h5(temp, entry.name))
    _pin(target, digest.hexdigest())
    return target


def install_local(path: str | Path, name: str | None = None) -> Path:
    """Copy a weight file the user already has into the weights folder (atomically), after a sanity check.

    ``name`` defaults to the file's own name when it is a known one, else to what its layers say it is.
    """
    source = Path(path).expanduser()
    if not source.is_file():  # a FIFO or /dev/zero is never opened: it would be read forever
        raise WeightsError(f"{source} does not exist or is not a regular file.")
    entry = known(name or (source.name if source.name in KNOWN else file_kind(source)))
    check_h5(source, entry.name)
    target = weights_dir() / entry.name
    size = source.stat().st_size

    def copy(out: Any) -> None:
        with open(source, "rb") as handle:  # the size checked above and no more, even if the file grows meanwhile
            left = size
            while left > 0 and (chunk := handle.read(min(_CHUNK, left))):
                out.write(chunk)
                left -= len(chunk)

    _write_atomic(target, copy)
    digest = sha256_of(target)
    if entry.sha256 and digest != entry.sha256:
        target.unlink()
        raise WeightsError(f"{source.name}: sha256 {digest[:16]}… is not the published {entry.sha256[:16]}… "
                           f"of {entry.name}.")
    _pin(target, digest)
    return target


def status() -> list[dict[str, Any]]:
    """One row per known weight file: where it is, its size and checksum (for the CLI and the UI)."""
    rows = []
    for entry in KNOWN.values():
        error = None
        try:
            path = find(entry.name)
        except WeightsError as exc:
            path, error = None, str(exc)
        rows.append({
            "name": entry.name,
            "backbone": entry.backbone,
            "description": entry.description,
            "url": entry.url,
            "path": str(path) if path else None,
            "size": path.stat().st_size if path else None,
            "sha256": sha256_of(path) if path else None,
            "pinned_sha256": (entry.sha256 or pinned_sha256(path)) if path else entry.sha256,
            "error": error or (None if path or entry.url else entry.missing_hint or None),
        })
    return rows
