"""spanlake.jobs: batch Polars jobs over the tables: scorers, LLM judges, evaluation over stored
traces, production scoring, and token prices (`prices`: span costs from genai-prices and an
override file; cost roll-ups come next). Reads through `spanlake.query` and `spanlake.tables`;
writes `assessments` and `job_runs`.
"""
