#!/bin/sh
# Run once by the postgres image when it first initialises its data volume (mounted in
# /docker-entrypoint-initdb.d): a login role for Grafana that can read the task table and nothing
# else. The table does not exist yet (the first agent process to connect creates it), hence the
# default privileges on whatever the owner creates later.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v owner="$POSTGRES_USER" -v reader_password="$TASKS_READER_PASSWORD" <<'SQL'
CREATE ROLE tasks_reader LOGIN PASSWORD :'reader_password';
GRANT USAGE ON SCHEMA public TO tasks_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO tasks_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT ON TABLES TO tasks_reader;
SQL
