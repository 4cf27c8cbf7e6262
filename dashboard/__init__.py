"""spanlake.dashboard: the Streamlit monitoring pages. Reserved by the design card; no page is
built yet (ingest_batches already records what the ingest-health view will show)."""
