"""spanlake.jobs: batch Polars jobs over the tables: scorers, LLM judges, evaluation over stored
traces, production scoring (and, next, token cost roll-ups). Reads through `spanlake.query` and
`spanlake.tables`; writes `assessments` and `job_runs`.
"""
