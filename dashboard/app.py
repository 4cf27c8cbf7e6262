"""The dashboard's entrypoint: `streamlit run` this file (`spanlake dashboard` does).

The global filters live here, not in a page: widgets bound to query parameters survive page
changes only when they are in the entrypoint (Streamlit clears the others on navigation).
"""

from __future__ import annotations

import streamlit as st

from spanlake.dashboard import global_filters, pages

st.set_page_config(page_title="spanlake", page_icon=":material/monitoring:", layout="wide")
navigation = st.navigation(pages.all_pages())
global_filters.sidebar()
navigation.run()
