"""Weights notices: the command line gets commands and folders; browser users a sentence meant for them.

A browser user can run no shell command and has no business with the server's folders, so wherever a
weights message reaches a page (a backbone's ``available()`` reason, a load or download failure) it comes
from :mod:`core.pipeline.weights` already worded for them: no server path, no ``python -m core``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.config import serve_browsers, weights_dir
from core.pipeline import weights
from core.pipeline.backbones import BACKBONES
from core.pipeline.backbones.vggface16 import ENV_VGGFACE  # also declares the VGG-Face weight files
from core.pipeline.weights import WeightsError
from tests.conftest import displayed, open_page

RCMALLI = "rcmalli_vggface_tf_vgg16.h5"


@pytest.fixture
def browsers() -> Iterator[None]:
    """The process serves browsers, as a Streamlit server does (conftest's home fixture switches it back off)."""
    serve_browsers()
    yield


def leaks(text: str, home: Path) -> list[str]:
    """What a browser user must not be shown in ``text``: shell commands and server folders."""
    found = [marker for marker in ("python -m core", "pip install", str(home), str(Path.home()), str(weights_dir()))
             if marker in text]
    return found + (["a path"] if "/" in text else [])


def test_the_command_line_keeps_the_command_and_the_folders() -> None:
    message = weights.missing_message("vggface16")
    assert "python -m core weights --download vggface16" in message and str(weights_dir()) in message


def test_browser_users_get_a_sentence_for_them(browsers: None, facelab_home: Path) -> None:
    message = weights.missing_message("vggface16")
    assert message == ("VGG-Face weights not found on this server; the server's owner can download them "
                       "(about 580 MB).")
    assert leaks(message, facelab_home) == []


def test_a_file_shipped_in_a_package_is_installed_not_downloaded(browsers: None, facelab_home: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def absent() -> Path:
        raise ImportError("not installed")

    shipped = weights.WeightFile("model.dat", "shipped-net", "bundled", model="Shipped Net", locate=absent,
                                 missing_hint="pip install shipped_models")
    monkeypatch.setitem(weights.KNOWN, shipped.name, shipped)
    message = weights.missing_message("shipped-net")
    assert message == "Shipped Net weights not found on this server; the server's owner can install them."
    serve_browsers(False)
    assert "pip install shipped_models" in weights.missing_message("shipped-net")


def test_load_and_download_failures_name_no_server_folder(browsers: None, facelab_home: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VGGFACE, str(facelab_home / "typo.h5"))
    with pytest.raises(WeightsError) as missing:
        weights.find(RCMALLI)
    assert "typo.h5 does not exist" in str(missing.value) and leaks(str(missing.value), facelab_home) == []
    monkeypatch.delenv(ENV_VGGFACE)
    damaged = weights_dir() / RCMALLI
    damaged.parent.mkdir(parents=True, exist_ok=True)
    damaged.write_bytes(b"not the weights")
    weights.sidecar(damaged).write_text("0" * 64 + f"  {RCMALLI}\n")
    with pytest.raises(WeightsError) as mismatch:
        weights.check_file(damaged)
    assert str(mismatch.value).startswith(f"{RCMALLI}: sha256") and leaks(str(mismatch.value), facelab_home) == []
    damaged.unlink()
    tiny = dataclasses.replace(weights.KNOWN[RCMALLI], url="http://127.0.0.1:9/nothing-listens-here.h5")
    monkeypatch.setitem(weights.KNOWN, RCMALLI, tiny)
    with pytest.raises(WeightsError) as offline:
        weights.download(RCMALLI)
    assert "could not download" in str(offline.value) and "owner" in str(offline.value)
    assert leaks(str(offline.value), facelab_home) == []


def page_text(at: Any) -> str:
    """Every message, caption and Markdown block of a page as a reader sees it."""
    elements = [*at.caption, *at.markdown, *at.info, *at.warning, *at.error, *at.success]
    return "\n".join(displayed(str(element.value)) for element in elements)


@pytest.mark.usefixtures("workspace")
@pytest.mark.parametrize(("page", "state"), [("pages/train.py", {"tr_detector": "dlib-hog"}), ("pages/verify.py", {})])
def test_pages_explain_missing_weights_without_commands_or_paths(page: str, state: dict[str, str],
                                                                 facelab_home: Path) -> None:
    at = open_page(page, **state)
    if BACKBONES.entry("vggface16").available() is None:
        pytest.skip("VGG-Face weights are installed here: no notice to read")
    text = page_text(at)
    assert "VGG-Face weights not found on this server; the server's owner can download them" in text
    assert [marker for marker in ("python -m core", str(facelab_home), str(Path.home())) if marker in text] == []
