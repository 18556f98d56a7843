"""Zip import of hostile archives, name validation and the dataset builder."""

from __future__ import annotations

import io
import os
import stat
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import datasets_dir
from core.data import builder, names, zipimport
from core.data.audit import audit
from core.data.layout import scan
from core.images import ImageError
from tests.conftest import image_bytes, noise_image


def png(seed: int = 0, size: int = 16) -> bytes:
    return image_bytes(noise_image(size, size, seed=seed))


def make_zip(entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def good_entries(prefix: str = "") -> list[tuple[str | zipfile.ZipInfo, bytes]]:
    names = [f"{prefix}{split}/{person}/{i}.png" for split, n in (("train", 2), ("validation", 1), ("test", 1))
             for person in ("amy", "bob") for i in range(n)]
    return [(name, png(seed)) for seed, name in enumerate(names)]


def home_is_clean() -> bool:
    """Nothing in the datasets folder, not even a hidden temporary folder."""
    return list(datasets_dir().iterdir()) == []


# --- safe_name ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../etc", "con", "CON.txt", "lpt1", "", " ", "a/b", "a\\b", "\x00x", "a\nb",
                                  "x" * 200, ".hidden", "..", "dots.", "a*b", "a:b"])
def test_safe_name_rejects(name: str) -> None:
    with pytest.raises(ValueError) as info:
        names.safe_name(name)
    assert str(info.value)


@pytest.mark.parametrize("name", ["Amélie Poulain", "jerry_seinfeld", "s1", "Zoë-2", "李小龍", "v1.2 set", "console"])
def test_safe_name_accepts(name: str) -> None:
    assert names.safe_name(f"  {name} ") == name


# --- zip import --------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "my data/"])
def test_good_zip_with_and_without_wrapper(prefix: str) -> None:
    entries = good_entries(prefix) + [(f"{prefix}README.txt", b"hi"), (f"{prefix}train/amy/notes.txt", b"x"),
                                      ("__MACOSX/._x.png", b"junk"), (f"{prefix}train/bob/.DS_Store", b"junk")]
    report = zipimport.import_zip(make_zip(entries), "faces")
    assert report.path == datasets_dir() / "faces"
    assert report.images == 8 and report.people == ["amy", "bob"]
    assert report.wrapper == (prefix.rstrip("/") or None)
    skipped = {item["path"]: item["reason"] for item in report.skipped}
    assert "not an image" in skipped["train/amy/notes.txt"]
    assert "README.txt" in skipped and "__MACOSX/._x.png" in skipped
    result = audit(scan(report.path))
    assert result.counts == {"train": {"amy": 2, "bob": 2}, "validation": {"amy": 1, "bob": 1},
                             "test": {"amy": 1, "bob": 1}}
    assert [p.name for p in datasets_dir().iterdir()] == ["faces"]  # no temporary folder left


def test_zip_from_path_and_broken_images_reported(tmp_path: Path) -> None:
    truncated = image_bytes(noise_image(seed=5), "JPEG")
    entries = good_entries() + [("train/amy/cut.jpg", truncated[: len(truncated) // 2]),
                                ("train/bob/fake.png", b"not a png"),
                                ("train/bob/script.jpg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 9 9\n{ } loop\n")]
    path = tmp_path / "upload.zip"
    path.write_bytes(make_zip(entries))
    report = zipimport.import_zip(path, "faces")
    reasons = {item["path"]: item["reason"] for item in report.skipped}
    assert reasons["train/amy/cut.jpg"].startswith("broken image")
    assert reasons["train/bob/fake.png"].startswith("broken image")
    assert "not an image FaceLab reads" in reasons["train/bob/script.jpg"]  # skipped, the rest imported
    assert not (report.path / "train" / "amy" / "cut.jpg").exists()
    assert report.images == 8


def test_existing_name_needs_overwrite() -> None:
    zipimport.import_zip(make_zip(good_entries()), "faces")
    with pytest.raises(ValueError, match="already exists"):
        zipimport.import_zip(make_zip(good_entries()), "faces")
    smaller = [e for e in good_entries() if "bob" not in str(e[0])]
    report = zipimport.import_zip(make_zip(smaller), "faces", overwrite=True)
    assert report.people == ["amy"]
    assert not (datasets_dir() / "faces" / "train" / "bob").exists()
    assert [p.name for p in datasets_dir().iterdir()] == ["faces"]


def symlink_entry() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("train/amy/link.png")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(("entry", "message"), [
    ("../evil.png", r"outside the archive"),
    ("train/../../evil.png", r"outside the archive"),
    ("/etc/x.png", r"absolute path"),
    ("C:/windows/x.png", r"absolute path"),
    ("train\\..\\..\\evil.png", r"outside the archive"),
    (symlink_entry(), r"symbolic link"),
    ("train/amy/inner.zip", r"itself an archive"),
    ("train/amy/inner.tar.gz", r"itself an archive"),
])
def test_hostile_entries_refuse_the_archive(entry: str | zipfile.ZipInfo, message: str) -> None:
    data = make_zip(good_entries() + [(entry, png(99))])
    with pytest.raises(ValueError, match=message):
        zipimport.import_zip(data, "evil")
    assert home_is_clean()


def test_encrypted_entry_refused() -> None:
    """zipfile cannot write encrypted entries, so set the 'encrypted' flag bit in the headers by hand."""
    data = bytearray(make_zip(good_entries()))
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        offset = data.find(signature)
        data[offset + flag_offset] |= 0x1
    with pytest.raises(ValueError, match="encrypted"):
        zipimport.import_zip(bytes(data), "secret")
    assert home_is_clean()


def test_too_many_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACELAB_MAX_ZIP_FILES", "5")
    with pytest.raises(ValueError, match="at most 5"):
        zipimport.import_zip(make_zip(good_entries()), "big")
    assert home_is_clean()


def test_too_many_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACELAB_MAX_ZIP_BYTES", "1000")
    with pytest.raises(ValueError, match="at most 0 MB|more data than allowed"):
        zipimport.import_zip(make_zip(good_entries()), "big")
    assert home_is_clean()


def test_lying_size_header_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A header that declares a tiny size must not let the real data past the byte limit."""
    data = bytearray(make_zip([("train/amy/0.png", png(1, 64)), ("train/bob/0.png", png(2, 64))]))
    real = len(png(1, 64))
    monkeypatch.setenv("FACELAB_MAX_ZIP_BYTES", str(real + 100))
    # Rewrite the declared uncompressed size (central directory, offset 24) of every entry to 10 bytes.
    offset = 0
    while (offset := data.find(b"PK\x01\x02", offset)) >= 0:
        data[offset + 24:offset + 28] = (10).to_bytes(4, "little")
        offset += 4
    with pytest.raises(ValueError):
        zipimport.import_zip(bytes(data), "liar")
    assert home_is_clean()


def test_oversized_photo_skipped_and_case_clash_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    big = png(1, 200)
    monkeypatch.setenv("FACELAB_MAX_IMAGE_BYTES", str(len(big) - 1))
    report = zipimport.import_zip(make_zip(good_entries() + [("train/amy/big.png", big)]), "faces")
    assert {"path": "train/amy/big.png", "reason": "larger than the per-photo size limit"} in report.skipped
    assert not (report.path / "train" / "amy" / "big.png").exists()
    with pytest.raises(ValueError, match="appears twice"):
        zipimport.import_zip(make_zip(good_entries() + [("train/AMY/0.png", png(1))]), "clash")
    assert [p.name for p in datasets_dir().iterdir()] == ["faces"]


@pytest.mark.parametrize("data", [b"", b"not a zip at all", b"PK\x03\x04broken"])
def test_not_a_zip(data: bytes) -> None:
    with pytest.raises(ValueError, match="zip"):
        zipimport.import_zip(data, "junk")
    assert home_is_clean()


@pytest.mark.parametrize("entries", [
    [("photos/a.png", png(1))],  # no split folder
    [("train/a.png", png(1))],  # photo without a person folder
    [("test/a.png", png(1))],  # only unlabelled photos
    [("train/amy/notes.txt", b"x")],  # no image
])
def test_zip_without_valid_layout(entries: list[tuple[str, bytes]]) -> None:
    with pytest.raises(ValueError, match="person folder"):
        zipimport.import_zip(make_zip(entries), "empty")
    assert home_is_clean()


def flat_entries(people: dict[str, int], prefix: str = "") -> list[tuple[str | zipfile.ZipInfo, bytes]]:
    """``<prefix><person>/<i>.png`` only: the layout Teachable Machine users have, no split folders."""
    names = [f"{prefix}{person}/{i}.png" for person, n in people.items() for i in range(n)]
    return [(name, png(seed)) for seed, name in enumerate(names)]


def layout_of(root: Path) -> dict[str, dict[str, list[str]]]:
    """``{split: {person: sorted file names}}`` of an imported dataset."""
    return {split.name: {person.name: sorted(p.name for p in person.iterdir()) for person in split.iterdir()}
            for split in root.iterdir()}


@pytest.mark.parametrize("prefix", ["", "Teachable Machine/"])
def test_flat_zip_is_split_70_15_15_per_person(prefix: str) -> None:
    entries = flat_entries({"amy": 10, "bob": 7, "cy": 1}, prefix) + [(f"{prefix}README.txt", b"hi"),
                                                                      (f"{prefix}amy/notes.txt", b"x"),
                                                                      (f"{prefix}bob/old/0.png", png(99))]
    report = zipimport.import_zip(make_zip(entries), "flat")
    assert report.flat_split == (70, 15, 15) and report.people == ["amy", "bob", "cy"]
    assert report.wrapper == (prefix.rstrip("/") or None)
    layout = layout_of(report.path)
    counts = {person: tuple(len(layout[split].get(person, [])) for split in ("train", "validation", "test"))
              for person in ("amy", "bob", "cy")}
    assert counts == {person: builder.split_counts(n, (0.7, 0.15, 0.15)) for person, n in
                      (("amy", 10), ("bob", 7), ("cy", 1))}
    assert report.images == 18 and report.per_split == {"train": 13, "validation": 3, "test": 2}
    assert sorted(f for split in layout.values() for f in split["amy"]) == sorted(f"{i}.png" for i in range(10))
    skipped = {item["path"]: item["reason"] for item in report.skipped}
    assert skipped == {"README.txt": "not inside a person folder", "amy/notes.txt": "not an image file",
                       "bob/old/0.png": "nested deeper than <person>/<photo>"}
    assert report.summary() == ("Flat zip (no train/validation/test folders): 18 photos of 3 people split 70/15/15 "
                                "(13 train, 3 validation, 2 test), imported as 'flat'.")
    assert audit(scan(report.path)).totals()["per_split"] == report.per_split  # what the Audit tab will count


def test_flat_zip_split_is_the_same_whatever_the_entry_order() -> None:
    entries = flat_entries({"amy": 9, "bob": 6})
    first = layout_of(zipimport.import_zip(make_zip(entries), "one").path)
    second = layout_of(zipimport.import_zip(make_zip(entries[::-1]), "two").path)
    assert first == second


def test_a_split_zip_is_not_resplit_and_says_so() -> None:
    report = zipimport.import_zip(make_zip(good_entries()), "faces")
    assert report.flat_split is None and report.summary() == "Imported 8 photos of 2 people as 'faces'."


@pytest.mark.parametrize(("filename", "name"), [
    ("My faces (2).zip", "My faces 2"), ("C:\\Users\\me\\class 3B.ZIP", "class 3B"), ("../../etc.zip", "etc"),
    ("\u202eevil.zip", "evil"), ("Zoë_set.zip", "Zoë_set"), ("con.zip", ""), (".zip", ""), ("((()).zip", ""),
])
def test_name_from_the_zip_file_name(filename: str, name: str) -> None:
    assert zipimport.name_from_file(filename) == name
    if name:
        assert names.safe_name(name) == name


def test_name_from_a_long_zip_file_name_is_cut_to_the_limit() -> None:
    from core.config import limits

    assert zipimport.name_from_file("a" * 500 + ".zip") == "a" * limits().max_name_length


def test_bad_dataset_name_refused_before_reading() -> None:
    with pytest.raises(ValueError, match="separator"):
        zipimport.import_zip(make_zip(good_entries()), "../outside")
    assert home_is_clean()


SEGMENTS = st.sampled_from(["..", ".", "", "train", "val", "test", "amy", "Bob é", "con", ".hidden", "C:",
                            "/", "\\", "a.png", "b.txt", "c.zip", "..\\..", "x\x01y", "__MACOSX", "~"])


@pytest.mark.filterwarnings("ignore:Duplicate name")
@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.lists(SEGMENTS, min_size=1, max_size=6).map("/".join).filter(bool), min_size=1, max_size=6),
       absolute=st.booleans())
def test_property_zip_never_escapes(names: list[str], absolute: bool) -> None:
    base = Path(tempfile.mkdtemp())
    home = base.joinpath(*"abcdefgh") / "home"
    os.environ["FACELAB_HOME"] = str(home)  # the autouse fixture restores the variable afterwards
    entries = [(("/" if absolute and i == 0 else "") + name, png(i)) for i, name in enumerate(names)]
    try:
        zipimport.import_zip(make_zip(entries), "prop")
    except ValueError:
        pass
    target = (home / "datasets" / "prop").resolve()
    written = [p for p in base.rglob("*") if p.is_file()]
    assert all(p.resolve().is_relative_to(target) for p in written), written
    assert [p.name for p in (home / "datasets").iterdir() if p.name != "prop"] == []


# --- builder -----------------------------------------------------------------------------------------


def jpeg(seed: int) -> bytes:
    return image_bytes(noise_image(seed=seed), "JPEG")


@pytest.fixture
def built() -> str:
    builder.create_dataset("class")
    for offset, (person, count) in enumerate((("amy", 5), ("bob", 3), ("cy", 1))):
        builder.add_person("class", person)
        report = builder.add_photos("class", person, [(f"{person}{i}.jpg", jpeg(10 * offset + i))
                                                       for i in range(count)])
        assert len(report.added) == count and not report.rejected
    return "class"


def test_builder_create_and_add(built: str) -> None:
    assert builder.builder_datasets() == ["class"]
    assert builder.list_people(built) == ["amy", "bob", "cy"]
    photos = builder.list_photos(built, "amy")
    assert len(photos) == 5 and all(p.suffix == ".jpg" and len(p.stem) == 16 for p in photos)
    with pytest.raises(ValueError, match="already exists"):
        builder.create_dataset("class")
    with pytest.raises(ValueError, match="already"):
        builder.add_person(built, "amy")
    with pytest.raises(ValueError, match="separator"):
        builder.add_person(built, "a/b")
    with pytest.raises(ValueError, match="no person"):
        builder.add_photo(built, "zed", jpeg(1), "z.jpg")


def test_builder_photo_validation(built: str) -> None:
    stored = builder.add_photo(built, "cy", png(7), "shot.jpg")  # a PNG named .jpg keeps its real extension
    assert stored.suffix == ".png" and stored.read_bytes() == png(7)
    report = builder.add_photos(built, "cy", [("bad.jpg", b"garbage"), ("empty.png", b""), ("dup.png", png(7)),
                                              ("ok.jpg", jpeg(123))])
    assert len(report.added) == 1
    rejected = dict(report.rejected)
    assert set(rejected) == {"bad.jpg", "empty.png", "dup.png"}
    assert "already in the dataset" in rejected["dup.png"] and rejected["bad.jpg"].startswith("bad.jpg")
    with pytest.raises(ImageError):
        builder.add_photo(built, "cy", b"nope", "x.jpg")


def test_split_deterministic_and_idempotent(built: str) -> None:
    root = datasets_dir() / built
    layout = builder.split_dataset(built)
    assert layout == {"train": {"amy": 3, "bob": 1, "cy": 1}, "validation": {"amy": 1, "bob": 1},
                      "test": {"amy": 1, "bob": 1}}
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert builder.split_dataset(built) == layout
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == files
    pool = {p.name for p in (root / "_pool").rglob("*") if p.is_file()}
    in_splits = [p.name for split in ("train", "validation", "test") for p in (root / split).rglob("*") if p.is_file()]
    assert sorted(in_splits) == sorted(pool)  # every photo in exactly one split
    other_seed = builder.split_dataset(built, seed=1)
    assert other_seed == layout
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) != files
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no staging left
    assert audit(scan(root)).counts["train"] == {"amy": 3, "bob": 1, "cy": 1}


@pytest.mark.parametrize(("n", "expected"), [(0, (0, 0, 0)), (1, (1, 0, 0)), (2, (1, 1, 0)), (3, (1, 1, 1)),
                                             (5, (3, 1, 1)), (10, (7, 2, 1)), (20, (14, 3, 3))])
def test_split_counts(n: int, expected: tuple[int, int, int]) -> None:
    assert builder.split_counts(n, (0.7, 0.15, 0.15)) == expected


def test_split_rejects_bad_ratios(built: str) -> None:
    for ratios in [(0, 1, 1), (-1, 1, 1), (1, 1)]:
        with pytest.raises(ValueError, match="ratios"):
            builder.split_dataset(built, ratios)  # type: ignore[arg-type]
    assert builder.split_dataset(built, (1, 0, 0))["validation"] == {}


def test_remove_rename_delete(built: str) -> None:
    root = datasets_dir() / built
    builder.split_dataset(built)
    victim = builder.list_photos(built, "amy")[0]
    builder.remove_photo(built, "amy", victim.name)
    assert not list(root.rglob(victim.name))  # gone from the pool and from its split
    with pytest.raises(ValueError):
        builder.remove_photo(built, "amy", "../bob")
    builder.rename_person(built, "bob", "Bob Dylan")
    assert builder.list_people(built) == ["Bob Dylan", "amy", "cy"]
    assert (root / "train" / "Bob Dylan").is_dir() and not (root / "train" / "bob").exists()
    with pytest.raises(ValueError, match="already"):
        builder.rename_person(built, "amy", "cy")
    with pytest.raises(ValueError):
        builder.rename_person(built, "amy", "con")
    builder.delete_person(built, "amy")
    assert builder.list_people(built) == ["Bob Dylan", "cy"]
    assert not list(root.rglob("amy"))
    builder.delete_dataset(built)
    assert not root.exists()
    with pytest.raises(ValueError, match="no dataset"):
        builder.delete_dataset(built)
