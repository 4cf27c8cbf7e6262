"""Trace detail (being built)."""

import streamlit as st

st.title("Trace detail")
st.info("This page is being built.")
