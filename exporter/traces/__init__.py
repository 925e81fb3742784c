"""The library's spans: which provider makes them, bounded export, execution-level sampling."""
