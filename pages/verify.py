"""Verify page (being built)."""

import streamlit as st

st.title("Verify")
st.info("This page is being built.")
