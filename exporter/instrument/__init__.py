"""What agent code calls into: executions, steps, tool calls, their life cycle, the carrier,
the watchdog, the no-op objects."""
