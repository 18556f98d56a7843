"""Hostile names on every page (AppTest): a person, a dataset, photos and a run named with Markdown links and
images are shown literally, never rendered.

AppTest gives each element's Markdown source; every string Streamlit renders as Markdown (bodies, labels,
help, image captions, radio options) must carry the names escaped by ``pages.common.plain``, and plotly
figures must carry them as text (``chart_text``), never as tags. Select-box options and input values are
plain text in the browser, so they are left out (``test_browser_names`` checks the rendered page).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from streamlit.testing.v1 import AppTest

from core import runs as run_store
from core.data import builder
from pages.common import plain
from tests.conftest import image_bytes, noise_image, open_page, shared_dataset
from tests.test_page_train import wait

HOST = "evil.example"
TARGET = f"https:{HOST}"  # no slash: it goes into folder and file names
RUN = f"[Log in again](https:{HOST}) run"
RENAMED = f"![r](https:{HOST}) www.{HOST}"
MARKDOWN_FIELDS = {"body", "label", "help", "caption"}
LINK_SYNTAX = re.compile(r"(?<!\\)\]\(|(?<!\\)<[A-Za-z/!]|(?i:https?://|www\.)")
CODE_SPAN = re.compile(r"(?<!\\)`[^`]*`")  # shown as code: `train/<person>/<photo>` is no tag


def dataset_name(target: str) -> str:
    return f"[Log in again]({target})"


def person_names(target: str) -> dict[str, str]:
    """five_celebrity person → hostile name: a Markdown image, and an HTML link (what plotly would draw)."""
    return {"madonna": f"![x]({target})", "elton_john": f'<a href="{target}">Log in again'}


def photo_name(target: str, person: str, split: str, index: int) -> str:
    """Markdown image syntax for most photos; an HTML link for the first of each split."""
    if index == 0:
        return f'<a href="{target}">Log in again {split} {person}.jpg'
    return f"![p{index}]({target}) {split} {person}.jpg"


def write_hostile_dataset(root: Path, target: str) -> Path:
    """A dataset whose own name, people and photos all point at ``target`` (real faces, so it trains)."""
    source = shared_dataset("five_celebrity_faces")
    for person, name in person_names(target).items():
        for split, count in (("train", 4), ("validation", 1), ("test", 2)):
            folder = root / dataset_name(target) / split / name
            folder.mkdir(parents=True)
            for i, photo in enumerate(sorted((source / split / person).iterdir())[:count]):
                (folder / photo_name(target, person, split, i)).write_bytes(photo.read_bytes())
    return root / dataset_name(target)


DATASET, PEOPLE = dataset_name(TARGET), person_names(TARGET)


@pytest.fixture(scope="module")
def hostile_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_hostile_dataset(tmp_path_factory.mktemp("hostile_shared"), TARGET).parent


@pytest.fixture
def shared(hostile_root: Path, monkeypatch: pytest.MonkeyPatch, workspace: str) -> Path:
    monkeypatch.setenv("FACELAB_DATASET_DIRS", str(hostile_root))
    return hostile_root


def rendered_markdown(at: AppTest) -> list[str]:
    """Every string on the page that Streamlit renders as Markdown."""
    found: list[str] = []

    def collect(value: Any, kind: str, key: str = "") -> None:
        if isinstance(value, dict):
            for name, item in value.items():
                collect(item, kind, name)
        elif isinstance(value, list):
            for item in value:
                collect(item, kind, key)
        elif isinstance(value, str) and (key in MARKDOWN_FIELDS or (key == "options" and kind == "Radio")):
            found.append(value)

    def walk(node: Any) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            collect(MessageToDict(proto), type(proto).__name__)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return found


def assert_literal(at: AppTest, *names: str) -> None:
    """No Markdown string shows a hostile name unescaped (or any link syntax), no chart draws one as a tag,
    and each of ``names`` is on the page, escaped (so the check reached them)."""
    assert not at.exception, at.exception
    texts = rendered_markdown(at)
    leaks = [text for text in texts if HOST in text or LINK_SYNTAX.search(CODE_SPAN.sub("", text))]
    assert leaks == []
    joined = "\n".join(texts)
    assert "evil\\.example" in joined
    for name in names:
        assert plain(name) in joined, name
    for chart in at.get("plotly_chart"):
        assert not re.search(r"<a |\\u003ca ", chart.proto.spec, re.IGNORECASE)


def choose(at: AppTest, key: str, prefix: str) -> None:
    box = at.selectbox(key=key)
    box.set_value(next(option for option in box.options if option.startswith(prefix))).run()


def test_dataset_audit_and_builder(shared: Path) -> None:
    at = open_page("pages/dataset.py", timeout=60)
    choose(at, "ds_pick", DATASET)
    gallery = [photo_name(TARGET, "madonna", "train", i) for i in (0, 1)]
    assert_literal(at, *gallery)  # captions

    at.text_input(key="ds_new_name").input(DATASET)
    at.button(key="ds_create").click().run()
    assert_literal(at, DATASET)  # quoted by the refusal
    at.text_input(key="ds_new_name").input("class")
    at.button(key="ds_create").click().run()
    at.text_input(key="ds_new_person").input(PEOPLE["madonna"])
    at.button(key="ds_add_person").click().run()
    assert_literal(at, PEOPLE["madonna"])
    assert builder.list_people("class") == []

    at.text_input(key="ds_new_person").input("amy")
    at.button(key="ds_add_person").click().run()
    bad = f"![u](https:{HOST}).jpg"
    at.file_uploader(key="ds_photos_0").set_value([(bad, b"not a photo", "image/jpeg"),
                                                   ("good.png", image_bytes(noise_image(seed=1)), "image/png")])
    at.run()
    at.button(key="ds_add_photos").click().run()
    assert len(builder.list_photos("class", "amy")) == 1
    assert_literal(at, bad)  # the refused upload is named in its message


def test_train_predict_and_verify(shared: Path) -> None:
    at = open_page("pages/train.py", tr_detector="dlib-hog")
    choose(at, "tr_dataset", DATASET)
    at.selectbox(key="tr_head").set_value("centroid")
    at.text_input(key="tr_name").input(RUN)
    at.run()
    at.button(key="tr_start").click().run()
    job = wait(at, lambda j: not j.running)
    assert job.phase == "done", job.error
    assert_literal(at, RUN)

    (run,) = run_store.list_runs()
    at.text_input(key=f"tr_run_name_{run.id}").input(RENAMED).run()
    at.button(key="tr_run_rename").click().run()
    at.button(key="tr_run_activate").click().run()
    assert run_store.active_run() == run.id and run_store.list_runs()[0].name == RENAMED
    assert_literal(at, RENAMED)  # the flashes

    at = open_page("pages/predict.py")
    assert at.selectbox(key="pr_run").value == run.id
    assert_literal(at, *PEOPLE.values(), DATASET)  # faces named in the captions, the summary's heading

    at = open_page("pages/verify.py")
    at.selectbox(key="vf_detector").select("dlib-hog").run()
    choose(at, "vf_dataset", DATASET)
    for n in (1, 2):
        at.radio(key=f"vf_source{n}").set_value("From the dataset").run()
    assert_literal(at, DATASET)  # the verdict's advice and the Calibrate and Search buttons
    at.button(key="vf_search").click().run()
    assert_literal(at, *PEOPLE.values())  # 1:N search captions
    assert any(chart.proto.spec.count("&lt;a href") for chart in at.get("plotly_chart"))  # the map, as text
