"""Sessions and users (being built)."""

import streamlit as st

st.title("Sessions and users")
st.info("This page is being built.")
