"""The dashboard's page scripts (run by Streamlit, one per page; see dashboard/pages.py)."""
