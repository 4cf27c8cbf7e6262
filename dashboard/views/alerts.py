"""Alerts (being built)."""

import streamlit as st

st.title("Alerts")
st.info("This page is being built.")
