"""The dashboard's pages, in sidebar order: one script per page in views/."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import streamlit as st

VIEWS = Path(__file__).parent / "views"

# (script, title, icon, url path): the url path is part of every shared link, so keep it stable.
PAGES = (
    ("overview.py", "Overview", ":material/dashboard:", "overview"),
    ("traces.py", "Traces", ":material/search:", "traces"),
    ("trace_detail.py", "Trace detail", ":material/account_tree:", "trace"),
    ("quality.py", "Quality", ":material/verified:", "quality"),
    ("review.py", "Review queue", ":material/rate_review:", "review"),
    ("cost.py", "Cost", ":material/payments:", "cost"),
    ("sessions.py", "Sessions and users", ":material/forum:", "sessions"),
    ("ingest_health.py", "Ingest health", ":material/health_metrics:", "ingest"),
    ("alerts.py", "Alerts", ":material/notifications:", "alerts"),
)


def all_pages() -> list[st.Page]:
    return [
        st.Page(VIEWS / script, title=title, icon=icon, url_path=path, default=i == 0)
        for i, (script, title, icon, path) in enumerate(PAGES)
    ]


def page(url_path: str) -> st.Page:
    """The page at `url_path`, for st.switch_page / st.page_link (with query_params to carry state)."""
    for script, title, icon, path in PAGES:
        if path == url_path:
            return st.Page(VIEWS / script, title=title, icon=icon, url_path=path)
    raise KeyError(url_path)


def trace_url(trace_id: str) -> str:
    """A link to Trace detail for a LinkColumn (relative: it works under any server base path)."""
    return f"trace?{urlencode({'trace_id': trace_id})}"
