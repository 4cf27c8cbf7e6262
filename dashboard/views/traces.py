"""Traces (being built)."""

import streamlit as st

st.title("Traces")
st.info("This page is being built.")
