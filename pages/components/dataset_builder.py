"""The Dataset page's Builder tab: people, photos (uploads and webcam), a split, deletions.

Every file operation is :mod:`core.data.builder`; this module only lays out widgets and
queues messages (``flash``) that must survive the rerun after an action changed the files.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from core.data import builder
from core.data.names import safe_name
from core.pipeline.detection import DEFAULT_DETECTOR, count_faces
from core.pipeline.face_choice import several_faces_note
from pages.common import detector, flash, gallery, plain, user_errors

NEXT_RUN = "ds_builder_next_run"  # widget key → the value it shows from the next run on


def _bump(name: str) -> None:
    """Give a widget a fresh key so it empties after its content was used."""
    st.session_state[name] = st.session_state.get(name, 0) + 1


def _after_rerun(values: dict[str, str]) -> None:
    """Set widgets once the page reruns (select what was just made, empty a used text box): a widget already drawn
    in this run cannot take a new value, and a fresh key (``_bump``) would also forget what the user chose."""
    st.session_state.setdefault(NEXT_RUN, {}).update(values)


def _apply_after_rerun() -> None:
    """Call before drawing any builder widget."""
    for key, value in st.session_state.pop(NEXT_RUN, {}).items():
        st.session_state[key] = value


def flag_several_faces(person: str, files: list[tuple[str, bytes]]) -> None:
    """Warn (after the rerun) about added photos that show several faces: only one trains, maybe not ``person``."""
    counts = count_faces([data for _, data in files], detector(DEFAULT_DETECTOR))
    names = [name for (name, _), count in zip(files, counts) if count is not None and count > 1]
    if names:
        flash("warning", f"{several_faces_note(len(names))} Check that it is {person}: {', '.join(names)}.")


def add_photos_section(dataset: str, person: str) -> None:
    round_ = st.session_state.get("ds_upload_round", 0)
    uploads = st.file_uploader("Photos", type=None, accept_multiple_files=True, key=f"ds_photos_{round_}")
    check = st.toggle("Check added photos for several faces", value=True, key="ds_check_faces",
                      help="Runs the face detector on each added photo: a photo with a second person in it may "
                           "train on the wrong one.")
    if st.button(f"Add {len(uploads or [])} photo(s) to {plain(person)}", disabled=not uploads, key="ds_add_photos"):
        with user_errors("Photos not added"):  # a read-only or full home: the photos added before it stay
            files = [(f.name, f.getvalue()) for f in uploads]
            report = builder.add_photos(dataset, person, files)
            if report.added:
                flash("success", f"Added {len(report.added)} photo(s) to {person}.")
            for filename, message in report.rejected:
                flash("error", f"Not added — {message}")
            if check and report.added:
                refused = {filename for filename, _ in report.rejected}
                flag_several_faces(person, [(name, data) for name, data in files if name not in refused])
            _bump("ds_upload_round")
            st.rerun()
    shot = st.camera_input("Or take a webcam shot", key=f"ds_camera_{round_}")
    if shot is not None and st.button(f"Add this shot to {plain(person)}", key="ds_add_shot"):
        with user_errors("Shot not added"):
            builder.add_photo(dataset, person, shot.getvalue(), shot.name)
            flash("success", f"Added a webcam shot to {person}.")
            _bump("ds_upload_round")
            st.rerun()


def person_section(dataset: str, person: str) -> None:
    add_photos_section(dataset, person)
    photos = builder.list_photos(dataset, person)
    st.caption(f"{plain(person)}: {len(photos)} photo(s)")

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
                _after_rerun({"ds_builder_person": safe_name(new_name), f"ds_rename_{person}": ""})
                st.rerun()
    with right:
        sure = st.checkbox(f"Yes, delete {plain(person)} and all their photos", key=f"ds_delete_person_ok_{person}")
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
    _apply_after_rerun()
    names = builder.builder_datasets()
    left, right = st.columns(2)
    with right:
        new = st.text_input("New dataset name", key="ds_new_name")
        if st.button("Create dataset", key="ds_create"):
            with user_errors("Could not create the dataset"):
                created = builder.create_dataset(new).name
                flash("success", f"Created '{created}'.")
                _after_rerun({"ds_builder_dataset": created, "ds_new_name": ""})
                st.rerun()
    if not names:
        left.info("No builder dataset yet: create one.")
        return
    dataset = left.selectbox("Dataset", names, key="ds_builder_dataset")
    new_person = st.text_input("Person's name", key="ds_new_person")
    if st.button("Add person", key="ds_add_person"):
        with user_errors("Could not add the person"):
            added = builder.add_person(dataset, new_person).name
            flash("success", f"Added {added}.")
            _after_rerun({"ds_builder_person": added, "ds_new_person": ""})
            st.rerun()
    people = builder.list_people(dataset)
    if people:
        person = st.selectbox("Person", people, key="ds_builder_person")
        person_section(dataset, person)
        split_section(dataset)
    else:
        st.info("Add a person, then their photos.")
    st.subheader("Delete the dataset")
    sure = st.checkbox(f"Yes, delete '{plain(dataset)}' and every photo in it", key="ds_delete_dataset_ok")
    if st.button("Delete dataset", disabled=not sure, key="ds_delete_dataset"):
        with user_errors("Could not delete the dataset"):
            builder.delete_dataset(dataset)
            flash("success", f"Deleted '{dataset}'.")
            st.rerun()
