"""spanlake.jobs: batch Polars jobs over the tables (scorers, LLM-as-judge, token cost roll-ups).
Reserved by the design card; no job is built yet."""
