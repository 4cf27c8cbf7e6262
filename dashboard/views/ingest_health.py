"""Ingest health (being built)."""

import streamlit as st

st.title("Ingest health")
st.info("This page is being built.")
