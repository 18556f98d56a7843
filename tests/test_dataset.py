"""Dataset scanning and auditing: synthetic layouts, the shared real datasets, and the ``scan`` CLI."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from core.data import audit as audit_module
from core.data import layout, paging
from tests.conftest import ROOT, image_bytes, noise_image, run_cli, shared_dataset


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def photo(seed: int, fmt: str = "PNG") -> bytes:
    return image_bytes(noise_image(seed=seed), fmt)


def smooth(seed: int, size: int = 96) -> np.ndarray:
    """A smooth random picture: its dHash is stable under resizing (unlike pixel noise)."""
    small = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC))


def make(root: Path, layout: dict[str, dict[str, int]], seed: int = 0) -> Path:
    """A dataset of distinct noise photos: ``{split: {person: n}}``."""
    for split, people in layout.items():
        for person, n in people.items():
            for i in range(n):
                seed += 1
                write(root / split / person / f"{i}.png", photo(seed))
    return root


def kinds(result: audit_module.Audit) -> dict[str, list[dict[str, str]]]:
    found: dict[str, list[dict[str, str]]] = {}
    for problem in result.problems:
        found.setdefault(problem["kind"], []).append(problem)
    return found


def test_counts_people_and_table(tmp_path: Path) -> None:
    root = make(tmp_path / "d", {"train": {"bob": 3, "amy": 2}, "validation": {"amy": 1, "bob": 1},
                                 "test": {"amy": 1, "bob": 2}})
    result = audit_module.audit(layout.scan(root))
    assert result.people == ["amy", "bob"]
    assert result.counts == {"train": {"amy": 2, "bob": 3}, "validation": {"amy": 1, "bob": 1},
                             "test": {"amy": 1, "bob": 2}}
    assert result.table.loc["bob"].tolist() == [3, 1, 2]
    assert list(result.table.columns) == ["train", "validation", "test"]
    assert result.per_person.to_dict() == {"amy": 4, "bob": 6}
    assert result.totals()["per_split"] == {"train": 5, "validation": 2, "test": 3}
    assert all(r.size > 0 for r in layout.scan(root).files)
    assert result.images[audit_module.FACES_COLUMN].isna().all()  # reserved for the face pipeline
    assert set(kinds(result)) == set()  # a clean dataset has no problems


def test_face_counts_become_classes_beside_dataset_relative_paths(tmp_path: Path) -> None:
    root = make(tmp_path / "d", {"train": {"amy": 2, "bob": 2}})
    result = audit_module.audit(layout.scan(root))
    frame = audit_module.with_face_counts(result, [0, 1, 3, None])
    assert frame[audit_module.FACES_COLUMN].tolist() == ["0", "1", "many", "unreadable"]
    assert all(photo.startswith("train/") for photo in frame["photo"])
    with pytest.raises(ValueError, match="3 face counts for 4 photos"):
        audit_module.with_face_counts(result, [1, 1, 1])


def test_problem_count_leaves_notes_out(tmp_path: Path) -> None:
    root = make(tmp_path / "d", {"train": {"amy": 1}})
    result = audit_module.audit(layout.scan(root))
    assert audit_module.problem_count(result) == sum(p["severity"] in {"error", "warning"} for p in result.problems) > 0


def test_val_alias_and_unlabelled_test(tmp_path: Path) -> None:
    root = make(tmp_path / "d", {"train": {"a": 2, "b": 2}, "val": {"a": 1, "b": 1}})
    write(root / "test" / "x.png", photo(100))
    write(root / "test" / "y.png", photo(101))
    write(root / ".DS_Store", b"junk")
    write(root / "__MACOSX" / "train" / "._a.png", b"junk")
    scanned = layout.scan(root)
    assert list(scanned.splits) == ["train", "validation", "test"]
    assert {r.person for r in scanned.files if r.split == "test"} == {None}
    assert all("MACOSX" not in str(r.path) and r.path.name != ".DS_Store" for r in scanned.files)
    result = audit_module.audit(scanned)
    assert result.counts["validation"] == {"a": 1, "b": 1}
    assert result.counts["test"] == {}
    assert result.totals()["unlabelled"] == 2
    assert "missing_from_split" not in kinds(result)  # an unlabelled test set misses nobody
    assert "unlabelled" not in kinds(result)


def test_bad_files_are_reported_not_dropped(tmp_path: Path) -> None:
    root = make(tmp_path / "d", {"train": {"a": 2, "b": 2}})
    write(root / "train" / "a" / "notes.txt", b"hello")
    write(root / "train" / "a" / "empty.jpg", b"")
    write(root / "train" / "b" / "fake.png", b"this is not a png")
    truncated = photo(50, "JPEG")
    write(root / "train" / "b" / "cut.jpg", truncated[: len(truncated) // 2])
    (root / "train" / "c").mkdir()
    write(root / "train" / "loose.png", photo(51))
    scanned = layout.scan(root)
    assert len(scanned.files) == 9  # every file recorded, the text file included
    result = audit_module.audit(scanned)
    found = kinds(result)
    assert [p["path"] for p in found["not_image"]] == ["train/a/notes.txt"]
    unreadable = {p["path"]: p["message"] for p in found["unreadable"]}
    assert set(unreadable) == {"train/a/empty.jpg", "train/b/fake.png", "train/b/cut.jpg"}
    assert "empty" in unreadable["train/a/empty.jpg"]
    assert "truncated" in unreadable["train/b/cut.jpg"] or "damaged" in unreadable["train/b/cut.jpg"]
    assert [p["path"] for p in found["empty_folder"]] == ["train/c"]
    assert [p["path"] for p in found["unlabelled"]] == ["train/loose.png"]
    assert result.counts == {"train": {"a": 2, "b": 2}}  # only usable photos are counted
    assert result.totals()["unreadable"] == 3
    assert all(set(p) == {"kind", "severity", "path", "message"} and p["message"] for p in result.problems)


def test_header_only_audit_catches_non_images_but_skips_hashes(tmp_path: Path) -> None:
    root = make(tmp_path / "d", {"train": {"a": 2, "b": 2}})
    write(root / "train" / "a" / "dup.png", (root / "train" / "b" / "0.png").read_bytes())
    write(root / "train" / "b" / "fake.png", b"nope")
    result = audit_module.audit(layout.scan(root), with_hashes=False)
    assert "unreadable" in kinds(result)
    assert "duplicate" not in kinds(result)
    assert result.images["sha256"].isna().all()


def test_byte_duplicates_within_and_across_splits(tmp_path: Path) -> None:
    root = make(tmp_path / "d", {"train": {"a": 3, "b": 3}, "test": {"a": 1, "b": 1}})
    write(root / "test" / "a" / "leak.png", (root / "train" / "a" / "0.png").read_bytes())
    write(root / "train" / "b" / "copy.png", (root / "train" / "b" / "1.png").read_bytes())
    found = kinds(audit_module.audit(layout.scan(root)))
    assert len(found["leakage"]) == 1 and found["leakage"][0]["severity"] == "error"
    assert "test/a/leak.png" in found["leakage"][0]["message"]
    assert len(found["duplicate"]) == 1 and "train/b/copy.png" in found["duplicate"][0]["message"]
    assert "near_leakage" not in found and "near_duplicate" not in found  # exact pairs are not repeated


def test_near_duplicates_resized_and_reencoded(tmp_path: Path) -> None:
    root = tmp_path / "d"
    for i in range(4):
        write(root / "train" / "a" / f"{i}.png", image_bytes(smooth(i)))
        write(root / "train" / "b" / f"{i}.png", image_bytes(smooth(10 + i)))
    original = smooth(1)
    resized = np.asarray(Image.fromarray(original).resize((70, 70), Image.Resampling.LANCZOS))
    write(root / "validation" / "a" / "resized.jpg", image_bytes(resized, "JPEG"))
    write(root / "train" / "b" / "again.jpg", image_bytes(smooth(12), "JPEG"))
    found = kinds(audit_module.audit(layout.scan(root)))
    assert [p["path"] for p in found["near_leakage"]] == ["train/a/1.png"]
    assert "validation/a/resized.jpg" in found["near_leakage"][0]["message"]
    assert len(found["near_duplicate"]) == 1
    assert {"train/b/2.png", "train/b/again.jpg"} <= set(found["near_duplicate"][0]["path"].split()) | set(
        found["near_duplicate"][0]["message"].replace(" (", " ").split())
    assert "duplicate" not in found


def test_distinct_photos_are_not_near_duplicates(tmp_path: Path) -> None:
    root = tmp_path / "d"
    for i in range(30):
        write(root / "train" / ("a" if i % 2 else "b") / f"{i}.png", image_bytes(smooth(100 + i)))
    found = kinds(audit_module.audit(layout.scan(root)))
    assert "near_duplicate" not in found and "near_leakage" not in found


def all_pairs_near(hashes: np.ndarray, max_bits: int) -> list[tuple[int, int, int]]:
    """The reference (and the audit's search before issue 14): every pair's exact Hamming distance, 64 rows at a time.

    benchmarks/bench_scaling_quadratic.py times it against ``audit._near_pairs``.
    """
    pairs = []
    for start in range(0, len(hashes), 64):
        distance = np.bitwise_count(hashes[start:start + 64, None, :] ^ hashes[None, :, :]).sum(axis=2)
        rows, cols = np.nonzero(distance <= max_bits)
        pairs.extend((start + i, j, int(distance[i, j])) for i, j in zip(rows.tolist(), cols.tolist()) if start + i < j)
    return pairs


def flipped(hash_row: np.ndarray, bits: int, rng: np.random.Generator) -> np.ndarray:
    """``hash_row`` with exactly ``bits`` distinct bits flipped."""
    unpacked = np.unpackbits(hash_row)
    unpacked[rng.choice(unpacked.size, bits, replace=False)] ^= 1
    return np.packbits(unpacked)


def planted_hashes(count: int, seed: int) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Random 256-bit hashes, a third of them replaced by copies of another at distances 0..12, and the plants."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 256, (count, 32), dtype=np.uint8)
    plants = []
    for k, target in enumerate(range(1, count, 3)):
        source = int(rng.integers(target))  # an earlier hash, perhaps itself a copy: chains of near copies
        hashes[target] = flipped(hashes[source], k % 13, rng)
        plants.append((source, target, k % 13))
    # Hashes agreeing on every 11th bit (one chunk of the index) but random elsewhere: candidates to reject.
    backdrop = np.unpackbits(hashes[-40:], axis=1)
    backdrop[:, ::11] = 0
    hashes[-40:] = np.packbits(backdrop, axis=1)
    return hashes, plants


def test_near_pairs_are_exactly_those_of_the_all_pairs_search() -> None:
    hashes, plants = planted_hashes(3000, seed=14)
    found = audit_module._near_pairs(hashes, audit_module.NEAR_DUPLICATE_BITS)
    assert found == all_pairs_near(hashes, audit_module.NEAR_DUPLICATE_BITS)  # same pairs, distances and order
    close = {(i, j): d for i, j, d in found}
    kept = [(s, t, d) for s, t, d in plants if t < len(hashes) - 40]  # the backdrop rewrote the last 40
    assert all(close[(s, t)] == d for s, t, d in kept if d <= 10)
    assert not any((s, t) in close for s, t, d in kept if d > 10)  # 11 or 12 random flips stay 11 or 12 apart
    assert sum(d <= 10 for *_, d in kept) >= 700


crowded = st.lists(st.tuples(st.sampled_from([0, 0xF0F0F0, 0x3C5A96]), st.sets(st.integers(0, 23), max_size=6)),
                   max_size=60)  # 24-bit hashes: three originals, each copy with up to 6 bits flipped


@settings(max_examples=60, deadline=None)
@given(crowded, st.integers(0, 6))
def test_near_pairs_match_the_all_pairs_search_on_crowded_hashes(copies: list[tuple[int, set[int]]],
                                                                max_bits: int) -> None:
    """Many near pairs and large buckets, at every distance bound up to 6."""
    values = [base ^ sum(1 << bit for bit in flips) for base, flips in copies]
    hashes = np.array([[v >> 16, (v >> 8) & 255, v & 255] for v in values], dtype=np.uint8).reshape(-1, 3)
    assert audit_module._near_pairs(hashes, max_bits) == all_pairs_near(hashes, max_bits)


def test_near_pairs_edge_cases() -> None:
    near = audit_module._near_pairs
    assert near(np.zeros((0, 32), np.uint8), 10) == []
    assert near(np.ones((1, 32), np.uint8), 10) == []
    same = np.full((40, 32), 0xA5, np.uint8)
    assert near(same, 10) == [(i, j, 0) for i in range(40) for j in range(i + 1, 40)]
    with pytest.raises(ValueError, match="between 0 and 255 bits"):
        near(same, 256)


def test_one_class_missing_split_and_too_few(tmp_path: Path) -> None:
    root = make(tmp_path / "one", {"train": {"solo": 3}, "test": {"solo": 1}})
    found = kinds(audit_module.audit(layout.scan(root)))
    assert found["one_class"][0]["severity"] == "error"
    assert [p["message"] for p in found["missing_split"]] == ["no validation/ folder."]

    root = make(tmp_path / "two", {"train": {"a": 3, "b": 1}, "validation": {"a": 1}, "test": {"a": 1, "b": 1}})
    found = kinds(audit_module.audit(layout.scan(root)))
    assert [p["path"] for p in found["missing_from_split"]] == ["validation/b"]
    assert [p["path"] for p in found["too_few_train"]] == ["train/b"]
    assert "one_class" not in found


def test_no_train_split_and_missing_folder(tmp_path: Path) -> None:
    root = make(tmp_path / "d", {"test": {"a": 1, "b": 1}})
    assert "no_train" in kinds(audit_module.audit(layout.scan(root)))
    with pytest.raises(ValueError, match="not found"):
        layout.scan(tmp_path / "nowhere")


def test_empty_dataset_and_oversized_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    empty = audit_module.audit(layout.scan(tmp_path / "empty"))
    assert empty.people == [] and empty.counts == {} and empty.table.empty
    assert {p["kind"] for p in empty.problems} == {"no_train", "missing_split"}
    root = make(tmp_path / "d", {"train": {"a": 1, "b": 1}})
    monkeypatch.setenv("FACELAB_MAX_IMAGE_BYTES", "100")
    found = kinds(audit_module.audit(layout.scan(root)))
    assert len(found["unreadable"]) == 2 and "limit" in found["unreadable"][0]["message"]


def test_fingerprint_changes_with_content(tmp_path: Path) -> None:
    root = make(tmp_path / "d", {"train": {"a": 2, "b": 2}})
    first = layout.fingerprint(layout.scan(root))
    assert first == layout.fingerprint(layout.scan(root))
    write(root / "train" / "a" / "new.png", photo(99))
    second = layout.fingerprint(layout.scan(root))
    assert second != first
    (root / "train" / "a" / "new.png").rename(root / "train" / "b" / "new.png")
    assert layout.fingerprint(layout.scan(root)) != second


def test_list_datasets_home_and_extra_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.config import datasets_dir

    (datasets_dir() / "built" / "_pool").mkdir(parents=True)
    (datasets_dir() / ".import-tmp").mkdir()
    extra = tmp_path / "shared"
    make(extra / "faces", {"train": {"a": 1}})
    make(extra / "only_test", {"test": {"a": 1}})
    (extra / "not_a_dataset").mkdir(parents=True)
    monkeypatch.setenv("FACELAB_DATASET_DIRS", str(extra))
    refs = layout.list_datasets()
    assert [(r.name, r.source) for r in refs] == [("built", "home"), ("faces", str(extra.resolve())),
                                                 ("only_test", str(extra.resolve()))]
    assert refs[1].path == (extra / "faces").resolve()
    assert layout.resolve("faces") == refs[1].path
    assert layout.resolve(str(extra / "only_test")) == (extra / "only_test").resolve()
    with pytest.raises(ValueError, match="not found"):
        layout.resolve("nope")


def test_thumbnail_is_upright_and_small(tmp_path: Path) -> None:
    image = Image.fromarray(noise_image(40, 80, seed=3))  # landscape pixels…
    exif = image.getexif()
    exif[0x0112] = 6  # …stored rotated: shown upright as portrait
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    path = write(tmp_path / "r.jpg", buffer.getvalue())
    thumb = layout.thumbnail(path, 20)
    assert thumb.shape == (20, 10, 3) and thumb.dtype == np.uint8
    root = tmp_path / "d"
    write(root / "train" / "a" / "r.jpg", buffer.getvalue())
    assert audit_module.audit(layout.scan(root)).totals()["exif_rotated"] == 1


def test_page_helper() -> None:
    items = list(range(50))
    assert paging.page(items, 1, 24) == list(range(24))
    assert paging.page(items, 3, 24) == [48, 49]
    assert paging.page(items, 9, 24) == [48, 49]  # clamped to the last page
    assert paging.page(items, 0, 24) == list(range(24))
    assert paging.page([], 1, 24) == []
    assert paging.page_count(50, 24) == 3 and paging.page_count(0, 24) == 1
    with pytest.raises(ValueError):
        paging.page(items, 1, 0)


def test_greyscale_and_rgba_modes(tmp_path: Path) -> None:
    root = tmp_path / "d"
    write(root / "train" / "a" / "g.png", image_bytes(noise_image(seed=1)[:, :, 0]))
    rgba = np.dstack([noise_image(seed=2), np.full((64, 48), 128, np.uint8)])
    write(root / "train" / "b" / "t.png", image_bytes(rgba))
    formats = audit_module.audit(layout.scan(root)).formats
    assert sorted(formats["mode"]) == ["L", "RGBA"]


# --- the shared real datasets ------------------------------------------------------------------------


def test_five_celebrity_faces() -> None:
    result = audit_module.audit(layout.scan(shared_dataset("five_celebrity_faces")))
    assert result.people == ["ben_afflek", "elton_john", "jerry_seinfeld", "madonna", "mindy_kaling"]
    assert result.totals()["per_split"] == {"train": 77, "validation": 16, "test": 24}
    assert result.counts["train"]["ben_afflek"] == 12
    modes = {(r["format"], r["mode"]) for r in result.formats.to_dict("records")}
    assert ("PNG", "RGBA") in modes and ("JPEG", "L") in modes  # the PNG named .jpg, the greyscale photo
    assert not [p for p in result.problems if p["severity"] != "info"]


def test_orl_att_faces_greyscale_pgm() -> None:
    result = audit_module.audit(layout.scan(shared_dataset("orl_att_faces")), with_hashes=False)
    assert len(result.people) == 40
    assert result.totals()["per_split"] == {"train": 240, "validation": 80, "test": 80}
    assert set(result.images["mode"]) == {"L"}
    assert set(result.images["width"]) == {92} and set(result.images["height"]) == {112}


def test_glint_sample() -> None:
    result = audit_module.audit(layout.scan(shared_dataset("glint360k_celebrity_sample")))
    assert len(result.people) == 23
    assert result.totals()["per_split"] == {"train": 275, "validation": 92, "test": 91}
    assert result.counts["test"]["kate_winslet"] == 3
    assert not [p for p in result.problems if p["severity"] == "error"]


# --- CLI ---------------------------------------------------------------------------------------------


def test_cli_json(tmp_path: Path, facelab_home: Path) -> None:
    root = make(tmp_path / "d", {"train": {"a": 2, "b": 2}, "test": {"a": 1}})
    write(root / "train" / "a" / "readme.txt", b"x")
    done = run_cli("scan", str(root), "--json", home=facelab_home)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["people"] == ["a", "b"]
    assert document["counts"] == {"train": {"a": 2, "b": 2}, "test": {"a": 1}}
    assert document["totals"]["images"] == 5
    assert {p["kind"] for p in document["problems"]} >= {"not_image", "missing_from_split", "missing_split"}
    assert "text" not in document
    text = run_cli("scan", str(root), home=facelab_home)
    assert text.returncode == 0 and "2 people, 5 usable images" in text.stdout


def test_cli_missing_folder(tmp_path: Path, facelab_home: Path) -> None:
    done = run_cli("scan", str(tmp_path / "missing"), "--json", home=facelab_home)
    assert done.returncode != 0
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "not found" in lines[0]
    assert "Traceback" not in done.stderr


def test_scan_path_imports_no_heavy_library() -> None:
    """The Dataset page and ``scan`` must start fast: no TensorFlow, Keras, OpenCV or dlib on their path."""
    code = ("import sys, core.data.layout, core.data.audit, core.data.builder, core.data.zipimport, core.cli.scan; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'cv2', 'dlib', 'mtcnn') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_audit_opens_each_photo_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Header and duplicate-hash thumbnail come from one Pillow opening (it opened every photo twice)."""
    from core import images

    root = make(tmp_path / "d", {"train": {"amy": 3, "bob": 2}})
    opened: list[int] = []
    real_open = images.Image.open
    monkeypatch.setattr(images.Image, "open", lambda *a, **k: opened.append(1) or real_open(*a, **k))
    result = audit_module.audit(layout.scan(root))
    assert len(opened) == 5 and result.images["dhash"].notna().all() and (result.images["width"] == 48).all()
    opened.clear()
    audit_module.audit(layout.scan(root), with_hashes=False)
    assert len(opened) == 5
