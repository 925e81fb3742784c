"""Benchmarks: what agent-exporter costs per execution, against the bare OTel SDK and a peer.

Run everything with `python3 -m benchmarks` (see `python3 -m benchmarks --help`); the table is
printed and written to docs/performance.md.
"""
