"""The Home page, driven headless with Streamlit's AppTest: its two ways in are buttons, its Train line is true."""

from __future__ import annotations

import pytest

from tests.conftest import open_page

pytestmark = pytest.mark.usefixtures("workspace")  # the test thread works where the app opened by open_page does


@pytest.mark.parametrize(("key", "label", "title"), [("home_start_dataset", "Start with a dataset", "Dataset"),
                                                     ("home_start_verify", "Compare two photos", "Verify")])
def test_start_actions_are_primary_buttons_that_open_their_page(key: str, label: str, title: str) -> None:
    at = open_page("pages/home.py", timeout=60)
    start = at.button(key=key)
    assert start.label == label and start.proto.type == "primary"
    start.click().run()
    assert not at.exception
    assert [t.value for t in at.title] == [title]


def test_train_line_promises_what_every_install_has() -> None:
    at = open_page("pages/home.py", timeout=60)
    text = "\n".join(m.value for m in at.markdown)
    train = next(line for line in text.splitlines() if line.startswith("2. **Train**"))
    assert "classifier head on face embeddings" in train
    assert "VGGFace16" not in text and "VGG-Face once its weights are downloaded" in text


def test_a_page_run_leaves_keras_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Streamlit's end-of-run Keras reset (process-wide: a full garbage collection and TensorFlow's kernel cache,
    under other users' models) no longer follows a FaceLab page run."""
    import inspect

    import keras
    from streamlit.runtime.scriptrunner import script_runner

    assert "_log_if_error(_clean_problem_modules)" in inspect.getsource(script_runner)  # still Streamlit's hook
    resets: list[bool] = []
    monkeypatch.setattr(keras.backend, "clear_session", lambda free_memory=True: resets.append(free_memory))
    monkeypatch.setattr(script_runner, "_clean_problem_modules", script_runner._clean_problem_modules)  # put back after
    at = open_page("pages/home.py", timeout=60)
    assert not at.exception
    assert resets == []
