#!/bin/bash
# Runs once, when the postgres volume is first initialised: one database and one login
# per service, so MLflow, the readings store and Airflow cannot touch each other's tables.
# Passwords come from the environment (.env) and are passed to psql as variables, which
# quotes them (:'var'), so no password ever appears in a SQL string built by the shell.
set -euo pipefail

create() {
  local db="$1" user="$2" password="$3"
  if [ -z "$password" ]; then
    echo "01-create-databases: no password for $user; set it in .env" >&2
    exit 1
  fi
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
       -v db="$db" -v usr="$user" -v pw="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'usr', :'pw')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'usr') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'usr')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'db') \gexec
SQL
}

create "${MLFLOW_DB_NAME:-mlflow}" "${MLFLOW_DB_USER:-mlflow}" "${MLFLOW_DB_PASSWORD:-}"
create "${READINGS_DB_NAME:-readings}" "${READINGS_DB_USER:-sensorguard}" "${READINGS_DB_PASSWORD:-}"
create "${AIRFLOW_DB_NAME:-airflow}" "${AIRFLOW_DB_USER:-airflow}" "${AIRFLOW_DB_PASSWORD:-}"
