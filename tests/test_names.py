"""Names are stored as they were checked (NFC, trimmed, nothing hidden), one name is never two look-alike
people, splits or datasets, and every name shows literally in the pages' Markdown."""

from __future__ import annotations

import html
import unicodedata
import zipfile
from pathlib import Path

import numpy as np
import pytest
from markdown_it import MarkdownIt

from core import runs
from core.config import datasets_dir
from core.data import builder, names, zipimport
from core.data.audit import audit
from core.data.layout import scan
from core.training.config import TrainConfig
from core.training.fit import train_head
from pages.common import WORD_JOINER, chart_text, plain
from tests.conftest import displayed, image_bytes, noise_image
from tests.test_importer import good_entries, make_zip

NFC = unicodedata.normalize("NFC", "José")
NFD = unicodedata.normalize("NFD", "José")
HOSTILE = ["![x](https:evil.example)", "[Log in again](https:evil.example)", "<img src=x onerror=alert(1)>",
           "a_b_ *c* `d` :red[e] $x$ :smile: &amp; ~~s~~ # h | t \\ {f}", "1. list", "- item", "> quote",
           "http://evil.example/x", "www.evil.example", "alice@evil.example", "<https://evil.example>"]


def png(seed: int) -> bytes:
    return image_bytes(noise_image(16, 16, seed=seed))


# --- the checks --------------------------------------------------------------------------------------


def test_nfc_and_nfd_spellings_are_one_stored_name() -> None:
    assert NFC != NFD
    assert names.safe_name(NFD) == NFC == names.safe_name(f" {NFC} ")
    assert names.name_key(NFD) == names.name_key("JOSÉ ") == names.name_key(NFC)
    assert names.name_key("alice ") == names.name_key("ALICE") and names.name_key("Train") == names.name_key("TRAIN")


@pytest.mark.parametrize("hidden", ["\u2028", "\u2029", "\u202e", "\u2066", "\u200b", "\u200f", "\x1b", "\x85"])
def test_hidden_characters_are_refused_everywhere(hidden: str) -> None:
    name = f"ali{hidden}ce"
    for check in (names.safe_name, names.clean_text):
        with pytest.raises(ValueError, match=f"U\\+{ord(hidden):04X}") as info:
            check(name)
        assert hidden not in str(info.value)  # the message quotes no hidden character back (terminals act on them)


def test_letters_with_combining_marks_are_names() -> None:
    assert names.safe_name("अमित") == "अमित"  # Devanagari vowel signs are marks (Mc), not letters
    assert names.safe_name("x\u0301y") == "x\u0301y"  # no precomposed form: kept as it is
    with pytest.raises(ValueError, match="not allowed"):
        names.safe_name("\u0301x")  # a mark on nothing


# --- builder -----------------------------------------------------------------------------------------


def test_builder_refuses_look_alike_datasets_and_people() -> None:
    builder.create_dataset(NFD)
    assert [p.name for p in datasets_dir().iterdir()] == [NFC]
    with pytest.raises(ValueError, match=f"'{NFC}' already exists"):
        builder.create_dataset("josé ")
    builder.add_person(NFC, "alice")
    for look_alike in ("alice ", "ALICE", "Alice"):
        with pytest.raises(ValueError, match="'alice' is already in"):
            builder.add_person(NFC, look_alike)
    builder.add_person(NFC, NFD)
    assert builder.list_people(NFC) == sorted(["alice", NFC])
    with pytest.raises(ValueError, match="'alice' is already in"):
        builder.rename_person(NFC, NFC, "Alice")


def test_a_change_of_case_is_a_rename_not_a_second_person() -> None:
    builder.create_dataset("class")
    builder.add_person("class", "alice")
    builder.add_photo("class", "alice", png(1), "a.png")
    builder.split_dataset("class", (1.0, 0.0, 0.0))
    builder.rename_person("class", "alice", "Alice")
    assert builder.list_people("class") == ["Alice"]
    assert [p.name for p in (datasets_dir() / "class" / "train").iterdir()] == ["Alice"]


# --- zip import --------------------------------------------------------------------------------------


def test_zip_folders_are_stored_as_one_nfc_name_per_person_and_split() -> None:
    entries = good_entries() + [(f"train/{NFD}/1.png", png(20)), (f"Train/{NFC} /2.png", png(21)),
                                (f"val/{NFC}/3.png", png(22)), (f"TEST/{NFD}/4.png", png(23))]
    report = zipimport.import_zip(make_zip(entries), "faces")
    assert report.people == sorted(["amy", "bob", NFC])
    root = datasets_dir() / "faces"
    assert sorted(p.name for p in root.iterdir()) == ["test", "train", "validation"]
    assert sorted(p.name for p in (root / "train" / NFC).iterdir()) == ["1.png", "2.png"]
    assert audit(scan(root)).counts["train"][NFC] == 2
    assert not [p for p in scan(root).problems if p["kind"] in ("lookalike_people", "duplicate_split")]


def test_zip_person_folders_differing_in_case_are_refused() -> None:
    entries = good_entries() + [("validation/Amy/9.png", png(30))]
    with pytest.raises(ValueError, match="'amy' and 'Amy' differ only in case"):
        zipimport.import_zip(make_zip(entries), "faces")
    assert list(datasets_dir().iterdir()) == []


def test_zip_entry_with_a_bidi_override_is_refused() -> None:
    info = zipfile.ZipInfo("train/amy/photo\u202egnp.exe.png")
    with pytest.raises(ValueError, match="U\\+202E"):
        zipimport.import_zip(make_zip(good_entries() + [(info, png(40))]), "faces")
    assert list(datasets_dir().iterdir()) == []


def test_zip_import_refuses_a_look_alike_of_an_existing_dataset() -> None:
    zipimport.import_zip(make_zip(good_entries()), "Faces")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="'Faces' already exists"):
            zipimport.import_zip(make_zip(good_entries()), "faces", overwrite=overwrite)
    assert [p.name for p in datasets_dir().iterdir()] == ["Faces"]
    assert zipimport.import_zip(make_zip(good_entries()), "Faces", overwrite=True).images == 8


# --- scan --------------------------------------------------------------------------------------------


def test_scan_reports_look_alike_people_and_counts_them_as_one(tmp_path: Path) -> None:
    seed = 0
    for folder in (f"train/{NFC}", f"train/{NFD}", "train/bob", "train/Bob ", "test/BOB"):
        seed += 1
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / f"{seed}.png").write_bytes(png(seed))
    dataset = scan(tmp_path)
    result = audit(dataset)
    assert result.counts == {"train": {NFC: 2, "Bob": 2}, "test": {"Bob": 1}}
    flagged = {p["path"]: p["message"] for p in dataset.problems if p["kind"] == "lookalike_people"}
    assert set(flagged) == {f"train/{NFC}", "train/bob", "test/BOB"}  # each spelling after the first (sorted)
    assert "counted as one person, 'Bob'" in flagged["test/BOB"]
    assert ascii(NFD) in flagged[f"train/{NFC}"]  # the two spellings that look the same are told apart


def test_scan_of_a_dataset_spelt_in_nfd_only_gives_nfc_labels_and_no_problem(tmp_path: Path) -> None:
    for split in ("train", "test"):
        (tmp_path / split / NFD).mkdir(parents=True)
        (tmp_path / split / NFD / "1.png").write_bytes(png(len(split)))
    dataset = scan(tmp_path)
    assert {record.person for record in dataset.images} == {NFC}
    assert not [p for p in dataset.problems if p["kind"] == "lookalike_people"]


def test_scan_reports_case_variant_split_folders(tmp_path: Path) -> None:
    for split, person in (("Train", "amy"), ("train", "bob")):
        (tmp_path / split / person).mkdir(parents=True)
        (tmp_path / split / person / "1.png").write_bytes(png(len(split + person)))
    dataset = scan(tmp_path)
    assert [p["kind"] for p in dataset.problems] == ["duplicate_split"]
    assert dataset.problems[0]["path"] == "train" and dataset.problems[0]["severity"] == "error"
    assert {record.person for record in dataset.images} == {"amy"}  # one train split, never two


# --- run names ---------------------------------------------------------------------------------------


def test_run_names_are_stored_as_checked() -> None:
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(c, 0.1, size=(4, 8)) for c in (0.0, 3.0)]).astype(np.float32)
    labels = ["ada"] * 4 + ["bob"] * 4
    config = TrainConfig(head="centroid", dataset="toy")
    info = runs.save_run(train_head(config, X, labels, X, labels), config, name=f" {NFD}  run ")
    assert info.name == f"{NFC} run"
    with pytest.raises(ValueError, match="U\\+202E"):
        runs.rename_run(info.id, "run \u202eevil")
    hostile = runs.rename_run(info.id, HOSTILE[1])
    assert hostile.name == HOSTILE[1]  # Markdown is a display matter: stored as typed, shown literally


# --- shown literally ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE)
def test_plain_renders_as_the_literal_text(name: str) -> None:
    rendered = MarkdownIt("commonmark").enable(["strikethrough", "table"]).render(plain(name))
    assert rendered.replace(WORD_JOINER, "") == f"<p>{html.escape(name, quote=False)}</p>\n"
    assert displayed(plain(name)) == name


@pytest.mark.parametrize("text", ["see http://evil.example", "www.evil.example", "mail alice@evil.example",
                                  "HTTPS://EVIL.EXAMPLE"])
def test_plain_breaks_bare_links_that_gfm_would_link_even_escaped(text: str) -> None:
    escaped = plain(text)
    assert WORD_JOINER in escaped
    assert "://" not in escaped.replace("\\", "") and "www." not in escaped.lower().replace("\\", "")


def test_plain_keeps_names_on_one_line() -> None:
    assert displayed(plain("alice\n\nbob\u2028  carol\t")) == "alice bob carol"


def test_chart_text_keeps_plotly_tags_literal() -> None:
    assert chart_text('<a href="https:evil.example">Log in</a> & co') == \
        '&lt;a href="https:evil.example"&gt;Log in&lt;/a&gt; &amp; co'
