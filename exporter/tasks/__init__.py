"""The task store: every execution in a database (SQLite or PostgreSQL), for the task list.

`configure(task_store=URL)` adds `sink.TaskSink` as a second consumer of the event vocabulary;
`query` reads the list back (the `agent-exporter tasks` command, the Grafana Tasks dashboard's
SQL is in dashboards/build.py).
"""
