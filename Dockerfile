# syntax=docker/dockerfile:1
# One image for every spanlake service (gateway, ingest, jobs, dashboard); see docker-compose.yml.
# Bases are pinned to exact releases (Debian 12 both, so the wheels built below suit the final
# stage); add @sha256 digests where builds must be byte-for-byte repeatable.

# Build stage: the Rust toolchain builds the native OTLP decoder (native/, an abi3 wheel for
# Python >= 3.11) and pip builds spanlake's own (pure Python) wheel.
FROM rust:1.95.0-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/build && /opt/build/bin/pip install --no-cache-dir "maturin>=1.9.4,<2" build
WORKDIR /src
COPY native native
RUN /opt/build/bin/maturin build --release --manifest-path native/Cargo.toml --out /wheels
COPY pyproject.toml README.md ./
COPY spanlake spanlake
COPY ingest ingest
COPY tables tables
COPY query query
COPY jobs jobs
COPY dashboard dashboard
RUN /opt/build/bin/python -m build --wheel --outdir /wheels .

# Final stage: the wheels and their dependencies (binary wheels from PyPI), no compilers, no root.
FROM python:3.11.14-slim-bookworm
RUN useradd --create-home --uid 10001 spanlake \
    && mkdir -p /home/spanlake/.cache/spanlake && chown -R spanlake /home/spanlake/.cache
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --only-binary=:all: /wheels/*.whl
USER spanlake
WORKDIR /home/spanlake
ENV SPANLAKE_WAREHOUSE=/home/spanlake/spanlake-data PYTHONUNBUFFERED=1
ENTRYPOINT ["spanlake"]
CMD ["--help"]
