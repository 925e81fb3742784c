"""Events to consumers: the event vocabulary, the fan-out (recorder), metrics, log events, the /metrics exposition."""
