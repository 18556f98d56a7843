"""Dataset page: audit a dataset, import one from a zip, or build one from uploads and webcam shots.

A thin view over ``core.dataset`` and ``core.importer``: every check and every file
operation lives there. Messages that must survive a rerun (after an action changed
the files) go through ``pages.common.flash``, a per-user list in ``st.session_state``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from core.data import builder, zipimport
from core.data.audit import FACES_COLUMN, Audit
from core.data.layout import fingerprint, thumbnail
from core.data.paging import page, page_count
from pages.common import (
    dataset_audit,
    dataset_picker,
    detector,
    ensure_app_navigation,
    flash,
    progress_callback,
    show_flash,
    user_errors,
)

ensure_app_navigation()

PER_PAGE = 24
COLUMNS = 6
THUMB = 160
SEVERITY_ICONS = {"error": "🔴 error", "warning": "🟠 warning", "info": "🔵 info"}


def gallery(paths: list[Path], key: str, under: Callable[[Path], None] | None = None) -> None:
    """A paged thumbnail grid; ``under`` draws extra widgets (e.g. a Remove button) below each photo."""
    pages = page_count(len(paths), PER_PAGE)
    number = int(st.number_input(f"Page (of {pages})", 1, pages, 1, key=key)) if pages > 1 else 1
    columns = st.columns(COLUMNS)
    for i, path in enumerate(page(paths, number, PER_PAGE)):
        with columns[i % COLUMNS]:
            try:
                st.image(thumbnail(path, THUMB), caption=path.name)
            except ValueError as exc:
                st.warning(f"{path.name}: {exc}")
            if under is not None:
                under(path)


# --- audit -------------------------------------------------------------------------------------------


def show_charts(result: Audit) -> None:
    table = result.table
    if table.empty:
        st.warning("No labelled, readable photo found: nothing to chart.")
        return
    long = table.reset_index().melt(id_vars="person", var_name="split", value_name="images")
    st.plotly_chart(px.bar(long, x="person", y="images", color="split", barmode="stack",
                           title="Photos per person and split"), key="ds_split_chart")
    per_person = result.per_person.sort_values(ascending=False).rename("images").reset_index()
    figure = px.bar(per_person, x="person", y="images", title="Photos per person (all splits)")
    figure.add_hline(y=float(per_person["images"].mean()), line_dash="dot", annotation_text="mean")
    st.plotly_chart(figure, key="ds_person_chart")
    ok = result.images[result.images["ok"]].assign(file=lambda f: f["path"].map(lambda p: p.name))
    st.plotly_chart(px.scatter(ok, x="width", y="height", color="split", hover_name="file",
                               title="Image sizes (pixels)"), key="ds_size_chart")


def show_problems(result: Audit) -> None:
    frame = result.problems_frame()
    st.subheader(f"Problems ({len(frame)})")
    if frame.empty:
        st.success("No problems found.")
        return
    frame["severity"] = frame["severity"].map(SEVERITY_ICONS)
    st.dataframe(frame, hide_index=True, width="stretch")


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


def show_face_counts(result: Audit) -> None:
    """Faces per photo (0 / 1 / many) with a chosen detector, computed on request: detection is slow."""
    from core.pipeline.detection import DEFAULT_DETECTOR, DETECTORS

    st.subheader("Faces per photo")
    entries = DETECTORS.entries()
    names = list(entries)
    name = st.selectbox("Detector", names, index=names.index(DEFAULT_DETECTOR), format_func=lambda n: entries[n].label,
                        key="ds_face_detector")
    key = ("faces", str(result.dataset.root), fingerprint(result.dataset), name)
    if st.button("Count faces", key="ds_count_faces", help=entries[name].description):
        from core.pipeline.detection import count_faces

        bar = st.progress(0.0)
        with user_errors("Could not count faces"):
            st.session_state[key] = count_faces(list(result.images["path"]), detector(name),
                                                progress_callback(bar, "Detecting faces in photo"))
    counts = st.session_state.get(key)
    if counts is None:
        st.caption("Photos with no face cannot train; photos with several use their largest face. "
                   "Count them with a detector (about 0.05–0.4 s per photo here, dlib-cnn about 2 s).")
        return
    frame = result.images.assign(**{FACES_COLUMN: ["unreadable" if c is None else "0" if c == 0 else "1" if c == 1
                                                   else "many" for c in counts]})
    frame["photo"] = [result.dataset.relative(p) for p in frame["path"]]
    table = frame.groupby(["split", FACES_COLUMN]).size().reset_index(name="photos")
    st.plotly_chart(px.bar(table, x="split", y="photos", color=FACES_COLUMN, barmode="stack",
                           title=f"Faces found per photo ({name})"), key="ds_faces_chart")
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
        metrics.append(("Problems", sum(p["severity"] != "info" for p in result.problems)))
        for column, (label, value) in zip(st.columns(len(metrics)), metrics):
            column.metric(label, value)
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
    st.write("Upload a zip laid out as `train/<person>/<photo>`, `validation/…`, `test/…` "
             "(a single top-level folder around them is fine).")
    upload = st.file_uploader("Zip file", type=["zip"], key="ds_zip")
    name = st.text_input("Dataset name", key="ds_zip_name", placeholder="the zip file's name")
    overwrite = st.checkbox("Replace an existing dataset with this name", key="ds_zip_overwrite")
    if st.button("Import", disabled=upload is None, key="ds_zip_import"):
        with user_errors("Import refused"):
            report = zipimport.import_zip(upload.getvalue(), name.strip() or Path(upload.name).stem,
                                         overwrite=overwrite)
            st.success(f"Imported {report.images} photos of {len(report.people)} people as '{report.name}'. "
                       "Pick it in the Audit tab.")
            if report.skipped:
                st.warning(f"{len(report.skipped)} file(s) were not kept:")
                st.dataframe(pd.DataFrame(report.skipped), hide_index=True)


# --- builder -----------------------------------------------------------------------------------------


def _bump(name: str) -> None:
    """Give a widget a fresh key so it empties after its content was used."""
    st.session_state[name] = st.session_state.get(name, 0) + 1


def add_photos_section(dataset: str, person: str) -> None:
    round_ = st.session_state.get("ds_upload_round", 0)
    uploads = st.file_uploader("Photos", type=None, accept_multiple_files=True, key=f"ds_photos_{round_}")
    if st.button(f"Add {len(uploads or [])} photo(s) to {person}", disabled=not uploads, key="ds_add_photos"):
        report = builder.add_photos(dataset, person, [(f.name, f.getvalue()) for f in uploads])
        if report.added:
            flash("success", f"Added {len(report.added)} photo(s) to {person}.")
        for filename, message in report.rejected:
            flash("error", f"Not added — {message}")
        _bump("ds_upload_round")
        st.rerun()
    shot = st.camera_input("Or take a webcam shot", key=f"ds_camera_{round_}")
    if shot is not None and st.button(f"Add this shot to {person}", key="ds_add_shot"):
        with user_errors("Shot not added"):
            builder.add_photo(dataset, person, shot.getvalue(), shot.name)
            flash("success", f"Added a webcam shot to {person}.")
            _bump("ds_upload_round")
            st.rerun()


def person_section(dataset: str, person: str) -> None:
    add_photos_section(dataset, person)
    photos = builder.list_photos(dataset, person)
    st.caption(f"{person}: {len(photos)} photo(s)")

    def remove_button(path: Path) -> None:
        if st.button("Remove", key=f"ds_remove_{path.name}"):
            with user_errors("Could not remove the photo"):
                builder.remove_photo(dataset, person, path.name)
                flash("success", f"Removed {path.name}.")
                st.rerun()

    gallery(photos, key=f"ds_pool_page_{person}", under=remove_button)
    left, right = st.columns(2)
    with left:
        new_name = st.text_input("New name", key=f"ds_rename_{person}")
        if st.button("Rename", key="ds_rename"):
            with user_errors("Could not rename"):
                builder.rename_person(dataset, person, new_name)
                flash("success", f"Renamed {person} to {new_name.strip()}.")
                st.rerun()
    with right:
        sure = st.checkbox(f"Yes, delete {person} and all their photos", key=f"ds_delete_person_ok_{person}")
        if st.button("Delete person", disabled=not sure, key="ds_delete_person"):
            with user_errors("Could not delete"):
                builder.delete_person(dataset, person)
                flash("success", f"Deleted {person} and their photos.")
                st.rerun()


def split_section(dataset: str) -> None:
    st.subheader("Split into train / validation / test")
    left, right = st.columns(2)
    validation = left.slider("Validation %", 0, 45, 15, 5, key="ds_split_validation")
    test = right.slider("Test %", 0, 45, 15, 5, key="ds_split_test")
    train = 100 - validation - test
    st.caption(f"Train: {train}%. Every person with 3 photos or more gets at least one photo in each split "
               "whose share is above 0.")
    seed = int(st.number_input("Seed", 0, 10_000, 0, key="ds_split_seed"))
    if st.button("Split", key="ds_split"):
        with user_errors("Could not split"):
            layout = builder.split_dataset(dataset, (train, validation, test), seed=seed)
            table = pd.DataFrame(layout).fillna(0).astype(int)
            st.success(f"Split {int(table.to_numpy().sum())} photos.")
            st.dataframe(table)


def builder_tab() -> None:
    names = builder.builder_datasets()
    left, right = st.columns(2)
    with right:
        new = st.text_input("New dataset name", key="ds_new_name")
        if st.button("Create dataset", key="ds_create"):
            with user_errors("Could not create the dataset"):
                builder.create_dataset(new)
                flash("success", f"Created '{new.strip()}'.")
                st.rerun()
    if not names:
        left.info("No builder dataset yet: create one.")
        return
    dataset = left.selectbox("Dataset", names, key="ds_builder_dataset")
    new_person = st.text_input("Person's name", key="ds_new_person")
    if st.button("Add person", key="ds_add_person"):
        with user_errors("Could not add the person"):
            builder.add_person(dataset, new_person)
            flash("success", f"Added {new_person.strip()}.")
            st.rerun()
    people = builder.list_people(dataset)
    if people:
        person = st.selectbox("Person", people, key="ds_builder_person")
        person_section(dataset, person)
        split_section(dataset)
    else:
        st.info("Add a person, then their photos.")
    st.subheader("Delete the dataset")
    sure = st.checkbox(f"Yes, delete '{dataset}' and every photo in it", key="ds_delete_dataset_ok")
    if st.button("Delete dataset", disabled=not sure, key="ds_delete_dataset"):
        with user_errors("Could not delete the dataset"):
            builder.delete_dataset(dataset)
            flash("success", f"Deleted '{dataset}'.")
            st.rerun()


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
