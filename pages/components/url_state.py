"""Page choices kept in the URL's query parameters, so a reload or a bookmark comes back to them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import streamlit as st

from core.data.layout import list_datasets
from pages.common import dataset_picker


def url_choice(param: str, key: str, options: Mapping[str, str]) -> None:
    """Start the select box ``key`` on the option the URL's ``?param=`` names (``options``: URL value → option),
    so a reload or a bookmark comes back to the same choice; call :func:`keep_in_url` after drawing the box.

    The URL's value is only ever looked up among the offered options (never used as a path or a name): a
    hostile or stale value is ignored and the box starts on its default.
    """
    wanted = st.query_params.get(param)
    if key not in st.session_state and wanted in options:
        st.session_state[key] = options[wanted]


def keep_in_url(param: str, value: str | None) -> None:
    """Write the current choice into the URL (``?param=``), or take it out when there is none to keep."""
    if value is None:
        st.query_params.pop(param, None)
    elif st.query_params.get(param) != value:
        st.query_params[param] = value


def kept_dataset_picker(label: str, key: str, param: str) -> Path | None:
    """:func:`pages.common.dataset_picker` whose choice survives a reload in the URL (``?param=<dataset name>``).

    The URL holds the dataset's name, no server path (the workspace's own dataset first when a shared one has
    the same name), looked up among the datasets this workspace is offered; a folder typed on the server is
    never put there.
    """
    refs = list_datasets()
    url_choice(param, key, {ref.name: ref.label for ref in reversed(refs)})  # reversed: the first ref wins
    root = dataset_picker(label, key)
    keep_in_url(param, next((ref.name for ref in refs if ref.label == st.session_state.get(key)), None))
    return root
