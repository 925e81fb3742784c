"""Other instrumentations' spans to events: the shared mapping, and the in-process span bridge."""
