"""Quality (being built)."""

import streamlit as st

st.title("Quality")
st.info("This page is being built.")
