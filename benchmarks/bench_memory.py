"""Memory of worst-case photos: one photo through each detector, and five browser sessions verifying at once.

Issue 11: a 72 KB PNG declaring 60 megapixels took 1.4 GB through MTCNN on the Verify page, and five such
uploads at once took the server from 1.9 to 3.6 GB. This script measures, with the figures it prints for
BENCHMARKS.md:

* **photos** — each worst-case photo through each detector, in a fresh process per photo and detector whose
  models are loaded and warm on a small photo: the peak resident memory above that warm process for
  detect → align → embed (first time, and again: the detectors' own buffers for a 1280-pixel input are then
  there), and for the Verify page's step-by-step analysis (``analyse_photo(with_steps=True)``). A 1280-pixel
  photo, the size every detector works at, is the reference: what a worst case costs beyond it is the photo's.
* **server** — ``streamlit run app.py`` and five browser sessions that each upload a worst-case photo (and an
  ordinary second photo) on the Verify page at the same moment; the peak resident memory of the server and
  its dlib worker processes, sampled every 0.1 s (target: under 2.5 GB).

* **crowd** — a 7×7 tile of one face (49 faces) through the Verify page's analysis and through embedding,
  with every face used and with the default face cap (``FACELAB_MAX_FACES``), in one process.

``--code DIR`` measures another checkout instead of this one, for before/after figures from one script:
``git archive HEAD | tar -x -C /tmp/before`` then ``--code /tmp/before``.

    python benchmarks/bench_memory.py                       # both parts
    python benchmarks/bench_memory.py --only photos --detectors mtcnn dlib-cnn
    python benchmarks/bench_memory.py --only server --server-photo issue11.png
    python benchmarks/bench_memory.py --only crowd
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sessions import CHROMIUM_ARGS, SHARED, WAIT_MS, rss_mb, start_server  # noqa: E402

DETECTORS = ("haar", "mtcnn", "dlib-hog", "dlib-cnn")
FACE = SHARED / "five_celebrity_faces" / "train" / "madonna"
SESSIONS = 5
ROUNDS = 3  # of the crowd timing


# --- the worst-case photos ------------------------------------------------------------------------------


def face_photo(index: int = 0) -> Image.Image:
    """A real face photo (165×209), the content every worst-case photo is made of."""
    return Image.open(sorted(FACE.iterdir())[index]).convert("RGB")


def canvas(width: int, height: int, seed: int) -> Image.Image:
    """A transparent RGBA canvas with one large face on it (``seed`` moves the face: every photo's bytes differ)."""
    face = face_photo()
    image = Image.new("RGBA", (width, height), (200, 200, 200, 0))
    side = height // 3
    image.paste(face.resize((side * face.width // face.height, side)), (width // 3 + seed * 7, height // 4))
    return image


def _jpeg(image: Image.Image, path: Path, orientation: int = 1) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.convert("RGB").save(path, quality=85, exif=exif)


WORST_CASES = {
    # For reference, not a worst case: a photo at the size every detector works at (1280 px), whatever its detector.
    "1280px.jpg": lambda path, seed: _jpeg(canvas(1280, 960, seed), path),
    # The photo: 60 megapixels, transparent (the costliest conversion), a few hundred KB as a PNG.
    "issue11.png": lambda path, seed: canvas(7745, 7745, seed).save(path),
    # The largest photo FaceLab now decodes (24 megapixels) in the same costly mode.
    "24mp-rgba.png": lambda path, seed: canvas(5656, 4242, seed).save(path),
    # The same size as a phone JPEG whose EXIF says "turn 90°" (a transpose of the whole image).
    "24mp-rotated.jpg": lambda path, seed: _jpeg(canvas(4242, 5656, seed), path, orientation=6),
    # A 48-megapixel phone photo: above the limit, so now decoded at half scale.
    "48mp.jpg": lambda path, seed: _jpeg(canvas(8000, 6000, seed), path),
}


def make_photo(kind: str, folder: Path, seed: int = 0) -> Path:
    """The worst case ``kind`` (a key of WORST_CASES) written into ``folder``; ``seed`` makes its bytes unique."""
    path = folder / f"{seed}-{kind}"
    WORST_CASES[kind](path, seed)
    return path


# --- one photo, one detector, in a fresh process ------------------------------------------------------


def _status(field: str) -> float:
    """A /proc/self/status figure in MB (VmRSS: now; VmHWM: the peak since the last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _peak_above(baseline: float, work) -> float:  # noqa: ANN001 - a callable
    """Peak resident memory (MB) while ``work()`` runs, above ``baseline``.

    A fixed baseline, not the memory just before: memory a pass freed but the allocator kept would
    otherwise hide part of the next pass's peak.
    """
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    work()
    return _status("VmHWM:") - baseline


def child(detector: str, photo: Path) -> dict:
    """Measure one photo through one detector in this process (run by the parent in a fresh one)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from core.api import pipeline
    from core.images import ImageError, load_image
    from core.services.verify import NoFaceError, analyse_photo

    chosen = pipeline(detector, "dlib-resnet")
    ordinary = sorted(FACE.iterdir())[1].read_bytes()
    analyse_photo(chosen, ordinary, "ordinary", with_steps=True)  # models loaded and warm on a small photo
    gc.collect()
    baseline = _status("VmRSS:")
    data = photo.read_bytes()
    out: dict = {"detector": detector, "photo": photo.name}

    def embed() -> None:
        try:
            image = load_image(data)
        except ImageError as exc:
            out["refused"] = str(exc)
            return
        found = chosen.faces(image)
        out["shape"], out["faces"] = f"{image.shape[1]}×{image.shape[0]}", len(found)
        if found:
            chosen.backbone.embed(np.stack([aligned.crop for _, aligned in found]))

    def verify() -> None:
        try:
            analyse_photo(chosen, data, photo.name, with_steps=True)
        except NoFaceError:
            out["faces"] = 0

    start = time.perf_counter()
    out["first"] = _peak_above(baseline, embed)
    out["seconds"] = time.perf_counter() - start
    if "refused" not in out:
        out["again"] = _peak_above(baseline, embed)
        out["verify"] = _peak_above(baseline, verify)
    out["process"] = _status("VmHWM:")
    return out


def measure_photos(code: Path, detectors: list[str], kinds: list[str], folder: Path) -> list[dict]:
    rows = []
    for name in kinds:
        path = make_photo(name, folder)
        for detector in detectors:
            done = subprocess.run([sys.executable, __file__, "--child", detector, str(path), "--code", str(code)],
                                  capture_output=True, text=True, timeout=900, cwd=code)
            if done.returncode != 0:
                raise RuntimeError(f"{detector} on {name} failed:\n{done.stderr[-3000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row["photo"] = name
            rows.append(row)
            print(f"  {row}", file=sys.stderr, flush=True)
    return rows


def photo_table(rows: list[dict]) -> str:
    lines = ["| photo | detector | decoded as | faces | detect → embed, first time (MB) | again (MB) "
             "| Verify page with steps (MB) | s |", "|---|---|---|---:|---:|---:|---:|---:|"]  # MB above the warm process
    for row in rows:
        if "refused" in row:
            lines.append(f"| {row['photo']} | {row['detector']} | refused from its header | – | {row['first']:.0f} "
                         "| – | – | – |")
        else:
            lines.append(f"| {row['photo']} | {row['detector']} | {row['shape']} | {row['faces']} | {row['first']:.0f} "
                         f"| {row['again']:.0f} | {row['verify']:.0f} | {row['seconds']:.1f} |")
    return "\n".join(lines)


# --- five browser sessions at once ---------------------------------------------------------------------


class Sampler(threading.Thread):
    """Samples the resident memory of a process tree every 0.1 s; ``peak`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0.0, True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.1)


def open_verify(browser, url: str):  # noqa: ANN001, ANN201 - Playwright objects
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(f"{url}/verify")
    uploads = page.locator("[data-testid=stFileUploader] input[type=file]")
    uploads.nth(1).wait_for(state="attached", timeout=WAIT_MS)
    return page, uploads


def answered(page) -> None:  # noqa: ANN001 - a Playwright page
    """Wait until the page shows a verdict, or says the photo cannot be used."""
    page.get_by_text("Same person", exact=True).or_(page.get_by_text("Different people", exact=True)).or_(
        page.get_by_text("cannot be used")).first.wait_for(timeout=WAIT_MS)


def measure_server(code: Path, kind: str, folder: Path) -> dict[str, float]:
    """Server + workers RSS: idle, after one ordinary verification, and peak/after five worst-case ones at once."""
    from playwright.sync_api import sync_playwright

    photos = [make_photo(kind, folder, seed) for seed in range(1, SESSIONS + 1)]
    ordinary = [sorted(FACE.iterdir())[i] for i in (1, 2)]
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="facelab-bench-home-") as home:
        server, url = start_server(Path(home), code)
        try:
            figures["idle"] = rss_mb(server.pid)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
                page, uploads = open_verify(browser, url)
                uploads.nth(0).set_input_files(str(ordinary[0]))
                uploads.nth(1).set_input_files(str(ordinary[1]))
                answered(page)
                time.sleep(2)
                figures["warm"] = rss_mb(server.pid)
                sessions = [open_verify(browser, url) for _ in photos]
                sampler = Sampler(server.pid)
                sampler.start()
                start = time.perf_counter()
                for (_, uploads), photo in zip(sessions, photos):  # all five uploads go out before any answer
                    uploads.nth(0).set_input_files(str(photo))
                    uploads.nth(1).set_input_files(str(ordinary[0]))
                for page, _ in sessions:
                    answered(page)
                figures["seconds"] = time.perf_counter() - start
                time.sleep(2)
                sampler.running = False
                sampler.join()
                figures["peak"] = sampler.peak
                figures["after"] = rss_mb(server.pid)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    return figures


def server_table(kind: str, figures: dict[str, float]) -> str:
    return "\n".join([
        "| server + dlib workers | RSS (MB) |", "|---|---:|",
        f"| just started | {figures['idle']:.0f} |",
        f"| after one ordinary verification (models loaded) | {figures['warm']:.0f} |",
        f"| **peak while {SESSIONS} sessions verify {kind} at once** | **{figures['peak']:.0f}** |",
        f"| after them | {figures['after']:.0f} |",
        f"\n{SESSIONS} uploads to {SESSIONS} answers: {figures['seconds']:.1f} s.",
    ])


# --- a crowded photo -----------------------------------------------------------------------------------


def measure_crowd(detector: str = "mtcnn") -> str:
    """Seconds for a 7×7 tile of one face, every face used versus the default cap (warm models, fresh cache)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from core.api import pipeline
    from core.config import Limits
    from core.pipeline.embeddings import EmbeddingCache
    from core.services.verify import analyse_photo

    face = face_photo()
    tile = Image.new("RGB", (7 * face.width, 7 * face.height))
    for i in range(49):
        tile.paste(face, ((i % 7) * face.width, (i // 7) * face.height))
    buffer = io.BytesIO()
    tile.save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    chosen = pipeline(detector, "dlib-resnet")
    analyse_photo(chosen, sorted(FACE.iterdir())[1].read_bytes(), "warm-up", with_steps=True)
    best: dict[int, tuple[float, float]] = {}
    used: dict[int, str] = {}
    for _ in range(ROUNDS):  # interleaved, best of ROUNDS: other work on the machine only ever adds time
        for cap in (1000, Limits().max_faces):
            os.environ["FACELAB_MAX_FACES"] = str(cap)
            start = time.perf_counter()
            analysis = analyse_photo(chosen, data, "tile.jpg", with_steps=True)
            verify_seconds = time.perf_counter() - start
            with tempfile.TemporaryDirectory() as cache:
                start = time.perf_counter()
                chosen.embed([data], cache=EmbeddingCache(Path(cache)))
                embed_seconds = time.perf_counter() - start
            previous = best.get(cap, (float("inf"), float("inf")))
            best[cap] = (min(previous[0], verify_seconds), min(previous[1], embed_seconds))
            used[cap] = f"{len(analysis.faces)} of {analysis.found}"
    lines = [f"| {detector} + dlib-resnet, 7×7 tile | faces used | Verify page analysis (s) | embedding (s) |",
             "|---|---:|---:|---:|"]
    lines += [f"| {'every face' if cap == 1000 else f'cap {cap}'} | {used[cap]} | {seconds[0]:.1f} | {seconds[1]:.1f} |"
              for cap, seconds in best.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("photos", "server", "crowd"))
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS))
    parser.add_argument("--photos", nargs="+", choices=list(WORST_CASES), default=list(WORST_CASES))
    parser.add_argument("--server-photo", choices=list(WORST_CASES), default="24mp-rgba.png",
                        help="the worst case each session uploads")
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    parser.add_argument("--child", nargs=2, metavar=("DETECTOR", "PHOTO"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    code = args.code.resolve()
    sys.path.insert(0, str(code))
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return
    print(f"Measuring {code}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="facelab-bench-photos-") as tmp:
        folder = Path(tmp)
        if args.only in (None, "photos"):
            print(photo_table(measure_photos(code, args.detectors, args.photos, folder)))
        if args.only in (None, "server"):
            print(server_table(args.server_photo, measure_server(code, args.server_photo, folder)))
    if args.only in (None, "crowd"):
        print(measure_crowd())


if __name__ == "__main__":
    main()
