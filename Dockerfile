# The demo agent of the compose stack: the package installed the way the README says (`pip install .`),
# with the PostgreSQL driver extra for the stack's task store.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip install ".[tasks-postgresql]" \
    && useradd --system --uid 10001 --no-create-home agent

USER agent
EXPOSE 9464
ENTRYPOINT ["agent-exporter"]
CMD ["demo", "--addr", "0.0.0.0"]
