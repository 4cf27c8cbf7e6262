"""spanlake.dashboard: the Streamlit monitoring app (`spanlake dashboard`).

    app.py            the entrypoint: global filters in the sidebar (bound to the URL), navigation
    pages.py          the pages, in the order the sidebar lists them
    global_filters.py time range, service, environment, model, user: as Polars expressions and
                      as a filter string for spanlake.query.search_traces
    data.py           cached loaders keyed by the Delta table version (new data shows, unchanged
                      data is never re-read) and the notices shown instead of a traceback
    units.py          numbers as people read them (ms/s, $, k/M, %)
    views/            one script per page

It reads through `spanlake.query` and `spanlake.tables` (and the jobs' tables), never `ingest`.
"""
