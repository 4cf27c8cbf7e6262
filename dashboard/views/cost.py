"""Cost (being built)."""

import streamlit as st

st.title("Cost")
st.info("This page is being built.")
