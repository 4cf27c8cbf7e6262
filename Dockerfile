# One image for every spanlake service (ingest, maintenance, dashboard); see docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY spanlake spanlake
COPY ingest ingest
COPY tables tables
COPY query query
COPY jobs jobs
COPY dashboard dashboard
RUN pip install --no-cache-dir .
ENV SPANLAKE_WAREHOUSE=/data/warehouse
ENTRYPOINT ["spanlake"]
