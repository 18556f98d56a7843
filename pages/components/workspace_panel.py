"""The sidebar's workspace panel: the user's workspace link and, for the server's owner, every workspace.

The link is the only key to a workspace (no accounts): the panel says so. The owner's list appears only
when ``FACELAB_ADMIN_TOKEN`` is set and the URL carries the same ``admin`` token (``core.workspaces``).
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pandas as pd
import streamlit as st

from core import workspaces
from pages.common import ADMIN, WORKSPACE_PARAM, plain, user_errors

DONE = "ws_admin_done"  # what the owner's last action did, shown in the panel after the rerun


def workspace_link(workspace: str) -> str:
    """The URL of this page in ``workspace`` (relative when the browser's address is not known, as in tests)."""
    url = urlsplit(st.context.url or "")
    return urlunsplit((url.scheme, url.netloc, url.path or "/", f"{WORKSPACE_PARAM}={workspace}", ""))


def admin_panel(current: str) -> None:
    """Every workspace with its size and last change, and deleting one (after a confirmation)."""
    found = workspaces.list_workspaces()
    st.subheader("Workspaces (server owner)")
    if DONE in st.session_state:
        st.success(plain(st.session_state.pop(DONE)))
    if not found:
        st.caption("No workspace yet.")
        return
    st.dataframe(pd.DataFrame([{"workspace": info.id + (" (this one)" if info.id == current else ""),
                                "MB": round(info.bytes / 1e6, 1), "files": info.files,
                                "last change": info.changed.astimezone().strftime("%Y-%m-%d %H:%M")}
                               for info in found]), hide_index=True)
    doomed = st.selectbox("Workspace", [info.id for info in found], key="ws_admin_pick")
    sure = st.checkbox("Yes, delete it with every dataset, run and calibration in it", key=f"ws_admin_ok_{doomed}")
    if st.button("Delete workspace", disabled=not sure, key="ws_admin_delete"):
        with user_errors("Could not delete the workspace"):
            workspaces.delete_workspace(doomed)
            st.session_state[DONE] = f"Deleted workspace {doomed}."
            st.rerun()


def workspace_sidebar(workspace: str) -> None:
    """The workspace link to bookmark or share, then the owner's panel when the URL's admin token matches."""
    with st.sidebar:
        st.caption("**Your workspace link**: your datasets, runs and calibrations are kept under it. Bookmark it "
                   "to come back, or share it with a lab partner: whoever opens it sees and changes this workspace.")
        st.code(workspace_link(workspace), language=None, wrap_lines=True)
        token = st.session_state.get(ADMIN)
        if token is None:
            return
        if workspaces.is_admin(token):
            admin_panel(workspace)
        else:
            st.caption("This admin link is not valid on this server.")
