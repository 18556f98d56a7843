"""The weights manager: lookup order, atomic checked downloads, local installs, the CLI."""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import http.server
import io
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pytest

from core.cli import main
from core.config import weights_dir
from core.pipeline import weights
from core.pipeline.backbones.vggface16 import ENV_VGGFACE  # also declares the VGG-Face weight files
from core.pipeline.weights import WeightsError

RCMALLI = "rcmalli_vggface_tf_vgg16.h5"
CONV_NAMES = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
              "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3"]


def write_keras2_h5(path: Path, layers: Iterable[tuple[str, list[np.ndarray]]]) -> Path:
    """Write a weights file in the Keras-2 ``save_weights`` layout keras-vggface and deepface published.

    One group per layer (in the given order, recorded in ``layer_names``), each listing its
    arrays in ``weight_names``; layers without arrays are kept, as Keras wrote pooling layers.
    """
    layers = list(layers)
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = [name.encode() for name, _ in layers]
        handle.attrs["backend"] = b"tensorflow"
        handle.attrs["keras_version"] = b"2.2.4"
        for name, arrays in layers:
            group = handle.create_group(name)
            kinds = ["kernel:0", "bias:0"][:len(arrays)]
            group.attrs["weight_names"] = [f"{name}/{kind}".encode() for kind in kinds]
            for kind, array in zip(kinds, arrays):
                group.create_dataset(f"{name}/{kind}", data=array)
    return path


def tiny_rcmalli(path: Path, top: bool = True) -> Path:
    """A small file with the rcmalli layer names (tiny arrays: enough for the structural checks)."""
    names = CONV_NAMES + (["fc6", "fc7", "fc8"] if top else [])
    return write_keras2_h5(path, [(n, [np.full((2, 2), i, np.float32), np.zeros(2, np.float32)])
                                  for i, n in enumerate(names)])


class FakeResponse(io.BytesIO):
    """A urlopen result whose stream raises ``error`` after ``fail_after`` bytes."""

    def __init__(self, data: bytes, length: int | None = None, fail_after: int | None = None,
                 error: Exception | None = None) -> None:
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data) if length is None else length)}
        self.fail_after = fail_after
        self.error = error or ConnectionResetError("connection reset by peer")

    def read(self, size: int | None = -1) -> bytes:
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise self.error
        return super().read(min(size, 4096) if size and size > 0 else 4096)


@contextmanager
def http_server(body: bytes, announced: int) -> Iterator[str]:
    """A real loopback HTTP server that announces ``announced`` bytes and sends ``body``; yields its URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Length", str(announced))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{RCMALLI}"
    finally:
        server.shutdown()
        server.server_close()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def home_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake user home, so ~/.keras is the test's own."""
    home = tmp_path / "user"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv(ENV_VGGFACE, raising=False)
    return home


# --- lookup -------------------------------------------------------------------------------------

def test_find_order_env_then_keras_then_weights_dir(tmp_path: Path, home_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert weights.find(RCMALLI) is None
    in_home = tiny_rcmalli(weights_dir() / RCMALLI)
    assert weights.find(RCMALLI) == in_home.resolve()
    keras_copy = home_dir / ".keras" / "models" / "vggface" / RCMALLI
    keras_copy.parent.mkdir(parents=True)
    tiny_rcmalli(keras_copy)
    assert weights.find(RCMALLI) == keras_copy.resolve()
    elsewhere = tiny_rcmalli(tmp_path / "mine.h5")
    monkeypatch.setenv(ENV_VGGFACE, str(elsewhere))
    assert weights.find(RCMALLI) == elsewhere.resolve()
    assert weights.find_for_backbone("vggface16") == elsewhere.resolve()
    explicit = tiny_rcmalli(tmp_path / "explicit.h5")
    assert weights.find(RCMALLI, explicit) == explicit.resolve()
    # The env variable names the main VGG-Face file only, not the no-top one.
    assert weights.find("rcmalli_vggface_tf_notop_vgg16.h5") is None


def test_explicit_path_that_does_not_exist_is_an_error(tmp_path: Path, home_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    tiny_rcmalli(weights_dir() / RCMALLI)
    monkeypatch.setenv(ENV_VGGFACE, str(tmp_path / "typo.h5"))
    with pytest.raises(WeightsError, match="typo.h5 does not exist"):
        weights.find(RCMALLI)
    with pytest.raises(WeightsError, match="nope.h5"):
        weights.find(RCMALLI, tmp_path / "nope.h5")


def test_backbone_falls_back_to_the_deepface_file(home_dir: Path) -> None:
    assert weights.find_for_backbone("vggface16") is None
    sefiks = tiny_rcmalli(weights_dir() / "vgg_face_weights.h5")
    assert weights.find_for_backbone("vggface16") == sefiks.resolve()


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="vggface16"):
        weights.find("resnet9000.h5")
    assert weights.known("vggface16").name == RCMALLI


def test_missing_message_says_what_to_do(home_dir: Path) -> None:
    message = weights.missing_message("vggface16")
    assert "python -m core weights --download vggface16" in message
    assert RCMALLI in message and str(weights_dir()) in message


# --- download -----------------------------------------------------------------------------------

def test_download_file_url_with_progress_and_pinned_checksum(tmp_path: Path, home_dir: Path) -> None:
    source = tiny_rcmalli(tmp_path / "mirror.h5")
    data = source.read_bytes()
    calls: list[tuple[int, int]] = []
    path = weights.download(RCMALLI, progress=lambda done, total: calls.append((done, total)), url=source.as_uri())
    assert path == weights_dir() / RCMALLI
    assert path.read_bytes() == data
    assert calls and calls[-1] == (len(data), len(data))
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    digest = hashlib.sha256(data).hexdigest()
    assert weights.pinned_sha256(path) == digest
    assert weights.sidecar(path).read_text().startswith(digest)
    assert leftovers(weights_dir()) == [RCMALLI, RCMALLI + ".sha256"]
    assert weights.check_file(path, RCMALLI) == digest
    assert weights.find(RCMALLI) == path.resolve()


def test_verify_refuses_a_file_changed_since_download(tmp_path: Path, home_dir: Path) -> None:
    source = tiny_rcmalli(tmp_path / "mirror.h5")
    path = weights.download(RCMALLI, url=source.as_uri())
    tiny_rcmalli(path, top=False)  # replaced by a different file under the same name
    with pytest.raises(WeightsError, match=f"(?s){RCMALLI}.*pinned"):
        weights.check_file(path, RCMALLI)


@pytest.mark.parametrize("error", [ConnectionResetError("connection reset by peer"), TimeoutError("timed out"),
                                   http.client.IncompleteRead(b"", 100)])
def test_broken_stream_leaves_no_file(tmp_path: Path, home_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                      error: Exception) -> None:
    data = tiny_rcmalli(tmp_path / "mirror.h5").read_bytes()
    monkeypatch.setattr(urllib.request, "urlopen",
                        lambda *a, **k: FakeResponse(data, fail_after=len(data) // 2, error=error))
    with pytest.raises(WeightsError, match="broke after"):
        weights.download(RCMALLI)
    assert leftovers(weights_dir()) == []


def test_real_http_download_and_early_close(tmp_path: Path, home_dir: Path) -> None:
    data = tiny_rcmalli(tmp_path / "mirror.h5").read_bytes()
    totals: list[int] = []
    with http_server(data, len(data)) as url:
        path = weights.download(RCMALLI, progress=lambda done, total: totals.append(total), url=url)
    assert path.read_bytes() == data and set(totals) == {len(data)}
    path.unlink()
    weights.sidecar(path).unlink()
    with http_server(data[:1000], len(data)) as url, pytest.raises(WeightsError, match=RCMALLI):
        weights.download(RCMALLI, url=url)
    assert leftovers(weights_dir()) == []


def test_short_download_leaves_no_file(tmp_path: Path, home_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tiny_rcmalli(tmp_path / "mirror.h5").read_bytes()
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: FakeResponse(data, length=len(data) + 100))
    with pytest.raises(WeightsError, match="stopped at"):
        weights.download(RCMALLI)
    assert leftovers(weights_dir()) == []


def test_checksum_mismatch_is_refused(tmp_path: Path, home_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tiny_rcmalli(tmp_path / "mirror.h5")
    monkeypatch.setitem(weights.KNOWN, RCMALLI, dataclasses.replace(weights.KNOWN[RCMALLI], sha256="ab" * 32))
    with pytest.raises(WeightsError, match="sha256"):
        weights.download(RCMALLI, url=source.as_uri())
    assert leftovers(weights_dir()) == []


def test_downloaded_page_that_is_not_hdf5_is_refused(tmp_path: Path, home_dir: Path) -> None:
    page = tmp_path / "error.html"
    page.write_text("<html>rate limited</html>")
    with pytest.raises(WeightsError, match="not a readable HDF5"):
        weights.download(RCMALLI, url=page.as_uri())
    assert leftovers(weights_dir()) == []


def test_offline_closed_port_names_file_and_folder(home_dir: Path) -> None:
    with pytest.raises(WeightsError) as caught:
        weights.download(RCMALLI, url="http://127.0.0.1:9/rcmalli_vggface_tf_vgg16.h5")
    message = str(caught.value)
    assert RCMALLI in message and str(weights_dir()) in message and "127.0.0.1:9" in message
    assert leftovers(weights_dir()) == []


def test_offline_default_url_says_where_to_get_it(home_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(WeightsError) as caught:
        weights.download("vggface16")
    message = str(caught.value)
    assert weights.KNOWN[RCMALLI].url in message
    assert str(weights_dir()) in message and "name resolution" in message
    assert isinstance(caught.value, RuntimeError)


# --- local install ------------------------------------------------------------------------------

def test_install_local_refuses_non_hdf5(tmp_path: Path, home_dir: Path) -> None:
    fake = tmp_path / RCMALLI
    fake.write_bytes(b"PK\x03\x04 this is a zip, not weights")
    with pytest.raises(WeightsError, match=f"{RCMALLI}: not a readable HDF5"):
        weights.install_local(fake)
    assert leftovers(weights_dir()) == []


def test_install_local_refuses_hdf5_without_the_layers(tmp_path: Path, home_dir: Path) -> None:
    other = write_keras2_h5(tmp_path / RCMALLI, [("dense_1", [np.ones((2, 2), np.float32)])])
    with pytest.raises(WeightsError, match="1 layers with weights"):
        weights.install_local(other)
    empty = tmp_path / "empty.h5"
    h5py.File(empty, "w").close()
    with pytest.raises(WeightsError, match="empty.h5"):
        weights.install_local(empty, RCMALLI)
    assert leftovers(weights_dir()) == []


def test_install_local_copies_and_recognises_renamed_files(tmp_path: Path, home_dir: Path) -> None:
    full = tiny_rcmalli(tmp_path / "downloaded (1).h5")
    installed = weights.install_local(full)
    assert installed == weights_dir() / RCMALLI
    assert installed.read_bytes() == full.read_bytes()
    assert weights.pinned_sha256(installed) == hashlib.sha256(full.read_bytes()).hexdigest()
    notop = weights.install_local(tiny_rcmalli(tmp_path / "x.h5", top=False))
    assert notop.name == "rcmalli_vggface_tf_notop_vgg16.h5"
    sequential = write_keras2_h5(tmp_path / "vgg.h5", [(f"conv2d_{i}", [np.ones(2, np.float32)]) for i in range(1, 17)])
    assert weights.install_local(sequential).name == "vgg_face_weights.h5"
    with pytest.raises(WeightsError, match="missing.h5 does not exist"):
        weights.install_local(tmp_path / "missing.h5")


def test_status_rows(tmp_path: Path, home_dir: Path) -> None:
    rows = {row["name"]: row for row in weights.status()}
    assert set(rows) == set(weights.KNOWN)
    assert rows[RCMALLI]["path"] is None and rows[RCMALLI]["url"].startswith("https://github.com/rcmalli/")
    installed = weights.install_local(tiny_rcmalli(tmp_path / RCMALLI))
    row = {row["name"]: row for row in weights.status()}[RCMALLI]
    assert row["path"] == str(installed.resolve())
    assert row["size"] == installed.stat().st_size
    assert row["sha256"] == row["pinned_sha256"] == hashlib.sha256(installed.read_bytes()).hexdigest()


# --- CLI ----------------------------------------------------------------------------------------

def test_cli_table_and_json(tmp_path: Path, home_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["weights"]) == 0
    text = capsys.readouterr().out
    assert RCMALLI in text and "dlib-resnet" in text and "missing" in text
    assert main(["weights", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    by_name = {row["name"]: row for row in document["weights"]}
    assert by_name["dlib_face_recognition_resnet_model_v1.dat"]["path"]
    assert by_name[RCMALLI]["path"] is None


def test_cli_download_shows_progress_on_stderr(tmp_path: Path, home_dir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    source = tiny_rcmalli(tmp_path / "mirror.h5")
    assert main(["weights", "--download", "vggface16", "--url", source.as_uri(), "--json"]) == 0
    captured = capsys.readouterr()
    assert "100%" in captured.err
    document = json.loads(captured.out)
    row = {row["name"]: row for row in document["weights"]}[RCMALLI]
    assert row["path"] == str((weights_dir() / RCMALLI).resolve())


def test_cli_errors_are_one_line(tmp_path: Path, home_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.h5"
    bad.write_text("not weights")
    assert main(["weights", "--from", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "bad.h5" in err and "\n" not in err
    assert main(["weights", "--download", "nonsense"]) == 2
    assert "unknown weight file" in capsys.readouterr().err
    assert main(["weights", "--url", "file:///x"]) == 2
