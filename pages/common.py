"""Helpers shared by the pages: the session's workspace, model access, user-facing error display, flashes and
the dataset picker.

Models are loaded once per server process by the plug-in registries (``core.registry``:
one shared instance per settings, built under a lock) and shared by every browser session;
anything that belongs to one user lives in ``st.session_state``, and on disk in the user's
workspace (``core.config``), whose id travels in the URL (``?workspace=``) so a reload or a
bookmark returns to it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import streamlit as st

from core.config import allow_server_paths, check_workspace_id, enter_workspace, new_workspace_id, serve_browsers
from core.data.audit import audit
from core.data.layout import fingerprint, list_datasets, scan, thumbnail
from core.data.paging import page, page_count
from core.files import storage_problem
from core.pipeline.backbones import BACKBONES
from core.pipeline.detection import DETECTORS
from pages.components.layout import wrapping_columns

NAVIGATED = "_facelab_navigated"  # session_state flag set by app.py once it has built the navigation
FLASH = "_facelab_flash"  # messages queued for the next run of the page that queued them
WORKSPACE_PARAM = "workspace"  # the URL's query parameter holding the workspace id …
WORKSPACE = "_facelab_workspace"  # … and the session's copy (page navigation may drop query parameters)
ADMIN_PARAM = "admin"  # the owner's token (FACELAB_ADMIN_TOKEN), kept the same way
ADMIN = "_facelab_admin"


def _kept_param(param: str, key: str) -> str | None:
    """A query parameter the session keeps: the URL's value wins; put back into the URL when navigation dropped it."""
    value = st.query_params.get(param)
    if value is not None:
        st.session_state[key] = value
    elif key in st.session_state:
        st.query_params[param] = st.session_state[key]
    return st.session_state.get(key)


def session_workspace() -> str:
    """Make this session's workspace current for this script or fragment run, and return its id.

    The workspace is the URL's ``?workspace=`` (a reload, a second tab or a lab partner's link), else the
    session's, else a new one written into the URL. A malformed id stops the page with a message: nothing
    is created, and the link can be corrected. Also switches the process into serving browsers, so
    nothing reaches the per-user folders without a workspace. Call it first in every run and fragment.
    """
    serve_browsers()
    _kept_param(ADMIN_PARAM, ADMIN)
    workspace = _kept_param(WORKSPACE_PARAM, WORKSPACE)
    if workspace is None:
        workspace = st.session_state[WORKSPACE] = st.query_params[WORKSPACE_PARAM] = new_workspace_id()
    try:
        enter_workspace(check_workspace_id(workspace))
    except ValueError:
        st.session_state.pop(WORKSPACE, None)
        st.error("This workspace link is damaged (a workspace id is 22 letters, digits, '-' or '_'). "
                 "Check the link you were given, or open the app without it to start a new workspace.")
        st.stop()
    return workspace


def detector(name: str, **settings: Any) -> Any:
    """The shared detector instance; the spinner shows only while the first session builds it."""
    with st.spinner("Loading the face detector…"):
        found = DETECTORS.get(name, **settings)
        found.load()
        return found


def backbone(name: str) -> Any:
    """The shared backbone instance; the spinner shows only while the first session builds it."""
    with st.spinner("Loading the face model…"):
        return BACKBONES.get(name)


MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character
BARE_LINK = re.compile(r"(?i)(?<=www)(?=\.)|(?<=:)(?=//)|(?<=@)")  # where GFM starts a link without Markdown
WORD_JOINER = "\u2060"


def plain(text: object) -> str:
    """``text`` (a name, a file name, a message quoting one) as Markdown that shows it literally, on one line.

    Messages, captions (``st.image`` too), headings, metric and most widget labels render Markdown, so a
    photo named ``![x](https:host)`` would make every browser showing it load that address, and
    ``[Log in again](https:host)`` would be a link. Every ASCII punctuation character is backslash-escaped
    (CommonMark shows escaped punctuation as itself: no link, image, emphasis, HTML, list, LaTeX, emoji or
    colour directive), bare links (``http://``, ``www.``, e-mail addresses), which GFM links even when escaped,
    get an invisible word joiner, and line breaks become spaces. Select-box options are plain text already:
    they need no ``plain``, dataframe cells neither.
    """
    one_line = " ".join(str(text).split())
    return MARKDOWN_PUNCTUATION.sub(r"\\\1", BARE_LINK.sub(WORD_JOINER, one_line))


def chart_text(text: object) -> str:
    """``text`` (a person or file name) for a plotly axis, legend, title or hover: plotly draws ``<a href>``,
    ``<b>`` and ``<br>`` tags found there, and shows ``&lt;`` as ``<``."""
    return html.escape(str(text), quote=False)


@contextmanager
def user_errors(what: str) -> Iterator[None]:
    """Show a failure as a clear message instead of a stack trace (a read-only or full home said plainly, without
    a server path); the page keeps working."""
    try:
        yield
    except (ValueError, RuntimeError, OSError, KeyError) as exc:
        st.error(plain(f"{what}: {storage_problem(exc) or exc}"))


def choose(kind: str, registry: Any, default: str, key: str,
           extra: Sequence[tuple[str, str, str]] = ()) -> str | None:
    """A select box of a registry's usable plug-ins (None when there is none); the others are listed with the reason.

    ``extra`` offers more choices after them, as (name, label, description), e.g. a workspace's fine-tuned runs.
    """
    entries = registry.entries()
    reasons = {name: entry.available() for name, entry in entries.items()}
    described = {name: (entry.label, entry.description) for name, entry in entries.items() if reasons[name] is None}
    described |= {name: (label, plain(description)) for name, label, description in extra}  # may quote a user's text
    usable = list(described)
    name = None
    if usable:
        index = usable.index(default) if default in usable else 0
        name = st.selectbox(kind.capitalize(), usable, index=index, key=key, format_func=lambda n: described[n][0])
        st.caption(described[name][1])
    else:
        st.error(f"No {kind} is usable on this server.")
    for other, reason in reasons.items():
        if reason is not None:
            st.caption(f"~~{entries[other].label}~~ unavailable: {plain(reason)}")
    return name


def flash(kind: str, message: str) -> None:
    """Show ``message`` (``kind``: success, error, …) after the rerun that follows a change on disk.

    The message is plain text, shown literally: it usually quotes a name someone typed.
    """
    st.session_state.setdefault(FLASH, []).append((kind, message))


def show_flash() -> None:
    """Show and forget the queued messages; a page calls this once, above its content."""
    for kind, message in st.session_state.pop(FLASH, []):
        getattr(st, kind)(plain(message))


def progress_callback(bar: Any, label: str) -> Callable[[int, int], None]:
    """A ``(done, total)`` callback that drives an ``st.progress`` bar."""

    def update(done: int, total: int) -> None:
        bar.progress(min(1.0, done / max(total, 1)), text=f"{label} {done}/{total}")

    return update


def gallery(paths: list[Path], key: str, under: Callable[[Path], None] | None = None, per_page: int = 24,
            side: int = 160) -> None:
    """A paged thumbnail grid, as many photos a row as the page has room for (file names stay readable at
    800 px); ``under`` draws extra widgets (e.g. a Remove button) below each photo."""
    pages = page_count(len(paths), per_page)
    number = int(st.number_input(f"Page (of {pages})", 1, pages, 1, key=key)) if pages > 1 else 1
    shown = page(paths, number, per_page)
    for cell, path in zip(wrapping_columns(len(shown), side), shown):
        with cell:
            try:
                st.image(thumbnail(path, side), caption=plain(path.name))
            except ValueError as exc:
                st.warning(plain(f"{path.name}: {exc}"))
            if under is not None:
                under(path)


SERVER_FOLDER = "Open a folder on the server…"


def dataset_picker(label: str = "Dataset", key: str = "dataset") -> Path | None:
    """Let the user choose a dataset: FaceLab's own, the server's shared ones and, when the server's owner
    allows it, any folder on the server. Returns its folder, or None while nothing usable is chosen."""

    refs = list_datasets()
    options = [ref.label for ref in refs] + ([SERVER_FOLDER] if allow_server_paths() else [])
    if not allow_server_paths():
        st.caption("Opening other folders on the server is disabled by the server's owner "
                   "(FACELAB_ALLOW_SERVER_PATHS).")
    if not options:
        st.info("No dataset yet: import a zip or build one on the Dataset page.")
        return None
    choice = st.selectbox(label, options, key=key)
    if choice != SERVER_FOLDER:
        return refs[options.index(choice)].path
    folder = st.text_input("Folder on the server", key=f"{key}_folder", placeholder="/data/my_faces").strip()
    if not folder:
        return None
    path = Path(folder).expanduser()
    if not path.is_dir():
        st.error(plain(f"No folder at {folder}."))
        return None
    return path.resolve()


@st.cache_data(show_spinner="Auditing the dataset…", max_entries=8)
def _audit_cached(_dataset: Any, root: str, fingerprint: str, with_hashes: bool) -> Any:

    return audit(_dataset, with_hashes=with_hashes)


def dataset_audit(path: Path, with_hashes: bool = True) -> Any:
    """The audit of a dataset folder, recomputed only when its files change (keyed by the fingerprint)."""

    dataset = scan(path)
    return _audit_cached(dataset, str(dataset.root), fingerprint(dataset), with_hashes)


def ensure_app_navigation() -> None:
    """Route a deep link through app.py's navigation on a freshly started server.

    Streamlit treats a ``pages/`` folder next to the entry script as its legacy multipage
    layout until some session has run ``st.navigation``; a first visitor arriving on
    ``/dataset`` would otherwise get a sidebar of raw file names. Clearing that flag and
    rerunning sends the session through ``app.py``. The rerun happens only for a session
    that has never been through ``app.py`` (its first run, so no widget input is lost).
    Call it first on every page: it also makes the session's workspace current (:func:`session_workspace`), and
    draws the workspace panel in the sidebar (from the page: AppTest drops what app.py draws after a first run).
    """
    from streamlit.runtime.pages_manager import PagesManager

    from pages.components.workspace_panel import workspace_sidebar  # here: the panel uses this module's helpers

    workspace_sidebar(session_workspace())  # also when the page runs without app.py (a deep link on a fresh server)
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        if NAVIGATED not in st.session_state:
            st.rerun()
