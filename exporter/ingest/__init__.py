"""OTLP ingest: agents in any language send their spans; the same metrics come out, the spans go on.

`agent-exporter ingest` runs `IngestService`: an OTLP/HTTP receiver (`receiver.py`), decoding to
the span bridge's summaries (`otlp.py`), per-trace assembly with time and memory budgets
(`assembly.py`), the shared `spanmap.assemble` and `Recorder`, `/metrics`, and a forwarder to the
next hop (`forward.py`).
"""

from __future__ import annotations

from .service import INGEST_METRICS, IngestService, IngestSettings

__all__ = ["INGEST_METRICS", "IngestService", "IngestSettings"]
