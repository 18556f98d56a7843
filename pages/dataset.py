"""Dataset page: audit a dataset, import one from a zip, or build one from uploads and webcam shots.

A thin view over ``core.dataset`` and ``core.importer``: every check and every file
operation lives there. Messages that must survive a rerun (after an action changed
the files) go through ``pages.common.flash``, a per-user list in ``st.session_state``.
"""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from core.data import zipimport
from core.data.audit import FACES_COLUMN, Audit, problem_count, problems_and_notes, several_faces, with_face_counts
from core.data.layout import fingerprint
from core.pipeline.detection import DEFAULT_DETECTOR, DETECTORS
from core.pipeline.face_choice import DEFAULT_FACE_CHOICE, several_faces_note
from core.services.faces import CountCost, count_cost, count_dataset_faces
from core.services.jobs import duration, exact_duration
from pages.common import (
    chart_text,
    dataset_audit,
    dataset_picker,
    detector,
    ensure_app_navigation,
    gallery,
    plain,
    progress_callback,
    show_flash,
    user_errors,
)
from pages.components.dataset_builder import builder_tab
from pages.components.layout import metric_row

ensure_app_navigation()

SEVERITY_ICONS = {"error": "🔴 error", "warning": "🟠 warning", "info": "🔵 info"}
ZIP_NAME_SUGGESTED = "ds_zip_name_suggested"  # the name last filled in from a zip's file name


# --- audit -------------------------------------------------------------------------------------------


def show_charts(result: Audit) -> None:
    table = result.table
    if table.empty:
        st.warning("No labelled, readable photo found: nothing to chart.")
        return
    long = table.reset_index().melt(id_vars="person", var_name="split", value_name="images")
    long["person"] = long["person"].map(chart_text)
    st.plotly_chart(px.bar(long, x="person", y="images", color="split", barmode="stack",
                           title="Photos per person and split"), key="ds_split_chart")
    per_person = result.per_person.sort_values(ascending=False).rename("images").reset_index()
    per_person["person"] = per_person["person"].map(chart_text)
    figure = px.bar(per_person, x="person", y="images", title="Photos per person (all splits)")
    figure.add_hline(y=float(per_person["images"].mean()), line_dash="dot", annotation_text="mean")
    st.plotly_chart(figure, key="ds_person_chart")
    ok = result.images[result.images["ok"]].assign(file=lambda f: f["path"].map(lambda p: chart_text(p.name)))
    st.plotly_chart(px.scatter(ok, x="width", y="height", color="split", hover_name="file",
                               title="Image sizes (pixels)"), key="ds_size_chart")


def show_problems(result: Audit) -> None:
    """Problems (the rows the headline metric counts), then the notes apart: worth knowing, nothing to fix."""
    problems, notes = problems_and_notes(result)
    st.subheader(f"Problems ({len(problems)})")
    if problems.empty:
        st.success("No problems found.")
    else:
        st.dataframe(problems.assign(severity=problems["severity"].map(SEVERITY_ICONS)), hide_index=True,
                     width="stretch")
    if not notes.empty:
        with st.expander(f"Notes ({len(notes)}): worth knowing, nothing to fix"):
            st.dataframe(notes.drop(columns="severity"), hide_index=True, width="stretch")


def show_gallery(result: Audit) -> None:
    st.subheader("Photos")
    images = result.images
    splits = [s for s in result.dataset.splits if (images["split"] == s).any()]
    if not splits:
        st.info("No photo to show.")
        return
    left, right = st.columns(2)
    split = left.selectbox("Split", splits, key="ds_gallery_split")
    in_split = images[images["split"] == split]
    people = sorted(p for p in in_split["person"].dropna().unique())
    unlabelled = "(unlabelled)"
    options = people + ([unlabelled] if in_split["person"].isna().any() else [])
    person = right.selectbox("Person", options, key="ds_gallery_person")
    chosen = in_split[in_split["person"].isna()] if person == unlabelled else in_split[in_split["person"] == person]
    st.caption(f"{len(chosen)} photo(s)")
    gallery(list(chosen["path"]), key=f"ds_gallery_page_{split}_{person}")


def count_cost_text(cost: CountCost) -> str:
    """What counting will take, as measured on this server (or roughly, from the detector's declared cost)."""
    pace = (f"{cost.seconds_per_photo:.2f} s a photo measured here" if cost.measured_photos
            else f"roughly {cost.seconds_per_photo:.2f} s a photo (the detector's declared cost; nothing measured here yet)")
    if not cost.loading:
        load = ""
    elif cost.load_seconds is None:
        load = ", plus loading the detector (the first count after the server starts)"
    else:
        load = f", plus about {exact_duration(cost.load_seconds)} to load the detector first (measured here)"
    return f"{pace}{load}: about {duration(cost.seconds)} for these {cost.photos} photo(s)."


def show_face_counts(result: Audit) -> None:
    """Faces per photo (0 / 1 / many) with a chosen detector, computed on request: detection is slow."""
    st.subheader("Faces per photo")
    entries = DETECTORS.entries()
    names = list(entries)
    name = st.selectbox("Detector", names, index=names.index(DEFAULT_DETECTOR), format_func=lambda n: entries[n].label,
                        key="ds_face_detector")
    key = ("faces", str(result.dataset.root), fingerprint(result.dataset), name)
    if st.button("Count faces", key="ds_count_faces", help=entries[name].description):
        bar = st.progress(0.0)
        with user_errors("Could not count faces"):
            st.session_state[key] = count_dataset_faces(list(result.images["path"]), name, detector,
                                                        progress_callback(bar, "Detecting faces in photo"))
    counted = st.session_state.get(key)
    if counted is None:
        st.caption(f"Photos with no face cannot train; photos with several use one ({DEFAULT_FACE_CHOICE} by default). "
                   f"Count them with a detector: {count_cost_text(count_cost(name, len(result.images)))}")
        return
    st.caption(f"Counted {len(counted.counts)} photo(s) in {exact_duration(counted.load_seconds + counted.count_seconds)}"
               + (f": loading the detector {exact_duration(counted.load_seconds)}, then" if counted.load_seconds >= 0.5
                  else ",") + f" {counted.count_seconds / max(len(counted.counts), 1):.2f} s a photo.")
    frame = with_face_counts(result, counted.counts)
    table = frame.groupby(["split", FACES_COLUMN]).size().reset_index(name="photos")
    st.plotly_chart(px.bar(table, x="split", y="photos", color=FACES_COLUMN, barmode="stack",
                           title=f"Faces found per photo ({name})"), key="ds_faces_chart")
    note = several_faces_note(len(several_faces(frame)))
    if note:
        st.info(f"{note} Check that it is the person the folder names (the table below lists them).")
    odd = frame[frame[FACES_COLUMN] != "1"]
    if len(odd):
        st.dataframe(odd[["split", "person", "photo", FACES_COLUMN]], hide_index=True)


def audit_tab() -> None:
    path = dataset_picker("Dataset", key="ds_pick")
    if path is None:
        return
    with user_errors("Could not audit the dataset"):
        result = dataset_audit(path)
        totals = result.totals()
        metrics = [("People", totals["people"])] + [(s.capitalize(), n) for s, n in totals["per_split"].items()]
        metrics.append(("Problems", problem_count(result)))
        metric_row(metrics)
        if totals["unlabelled"]:
            st.caption(f"{totals['unlabelled']} unlabelled test photo(s).")
        show_charts(result)
        st.subheader("Formats and modes")
        st.dataframe(result.formats, hide_index=True)
        if totals["exif_rotated"]:
            st.caption(f"{totals['exif_rotated']} photo(s) carry an EXIF rotation; FaceLab turns them upright.")
        show_problems(result)
        show_face_counts(result)
        show_gallery(result)


# --- import ------------------------------------------------------------------------------------------


def import_tab() -> None:
    st.write("Upload a zip laid out as `train/<person>/<photo>`, `validation/…`, `test/…`, or just "
             "`<person>/<photo>` (FaceLab then splits it 70/15/15); a single top-level folder around them is fine.")
    upload = st.file_uploader("Zip file", type=["zip"], key="ds_zip")
    suggested = zipimport.name_from_file(upload.name) if upload is not None else ""
    if st.session_state.get("ds_zip_name", "") in ("", st.session_state.get(ZIP_NAME_SUGGESTED, "")):
        st.session_state["ds_zip_name"] = suggested  # the zip's name until the user types their own
    st.session_state[ZIP_NAME_SUGGESTED] = suggested
    name = st.text_input("Dataset name", key="ds_zip_name", placeholder="the zip file's name")
    overwrite = st.checkbox("Replace an existing dataset with this name", key="ds_zip_overwrite")
    if st.button("Import", disabled=upload is None, key="ds_zip_import"):
        with user_errors("Import refused"):
            report = zipimport.import_zip(upload.getvalue(), name, overwrite=overwrite)
            st.success(plain(f"{report.summary()} Pick it in the Audit tab."))
            if report.skipped:
                st.warning(f"{len(report.skipped)} file(s) were not kept:")
                st.dataframe(pd.DataFrame(report.skipped), hide_index=True)


st.title("Dataset")
show_flash()
# A stateful widget (key + on_change="rerun"): the chosen tab is session state the server sends back on every
# rerun. With only a key, a rerun that showed or dropped a message above the tabs sometimes put the user back
# on Audit in the middle of building a dataset.
audit_view, import_view, builder_view = st.tabs(["Audit", "Import a zip", "Builder"], key="ds_tabs", on_change="rerun")
with audit_view:
    audit_tab()
with import_view:
    import_tab()
with builder_view:
    builder_tab()
