#!/usr/bin/env bash
# Runs every troubleshooting command of docs/deployment.md against a running stack and
# fails on the first one that does not give the documented answer. The tests run it
# against the native stack (`sensorguard stack up`); inside compose, run the same
# commands with `docker compose exec <service> ...` as the guide shows.
#
# Environment:
#   MLFLOW_URL                 e.g. http://127.0.0.1:5001              (required)
#   MLFLOW_BACKEND_STORE_URI   postgresql+psycopg2://...               (required)
#   PGHOST, PGPORT             the PostgreSQL server                   (default 127.0.0.1:5432)
#   SENSORGUARD_MODEL_NAME     registered model                        (default sensor-failure-detector)
#   PREDICTOR_URL              e.g. http://127.0.0.1:8000              (optional)
#   SENSORGUARD_STORE_URL      readings store URL                      (optional)
#   ARTIFACTS_DIR              the server's --artifacts-destination    (optional)
set -euo pipefail

: "${MLFLOW_URL:?set MLFLOW_URL, e.g. http://127.0.0.1:5001}"
: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI}"
PGHOST="${PGHOST:-127.0.0.1}"
PGPORT="${PGPORT:-5432}"
MODEL="${SENSORGUARD_MODEL_NAME:-sensor-failure-detector}"
MLFLOW_BIN="${MLFLOW_BIN:-mlflow}"
SENSORGUARD_BIN="${SENSORGUARD_BIN:-sensorguard}"

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }

step "PostgreSQL accepts connections: pg_isready -h $PGHOST -p $PGPORT"
pg_isready -h "$PGHOST" -p "$PGPORT" || fail "PostgreSQL is not accepting connections"

step "MLflow is up: curl -fsS $MLFLOW_URL/health"
[ "$(curl -fsS "$MLFLOW_URL/health")" = "OK" ] || fail "/health did not answer OK"

step "MLflow version: curl -fsS $MLFLOW_URL/version"
server_version="$(curl -fsS "$MLFLOW_URL/version")"
echo "$server_version"
client_version="$("$MLFLOW_BIN" --version | awk '{print $NF}')"
[ "$server_version" = "$client_version" ] || fail "server $server_version != client $client_version"

step "Experiments (replaces the removed experiments/list): POST /api/2.0/mlflow/experiments/search"
curl -fsS -X POST "$MLFLOW_URL/api/2.0/mlflow/experiments/search" \
  -H 'Content-Type: application/json' -d '{"max_results": 50}' \
  | jq -e '.experiments | length > 0' >/dev/null || fail "no experiments listed"
code="$(curl -s -o /dev/null -w '%{http_code}' "$MLFLOW_URL/api/2.0/mlflow/experiments/list")"
[ "$code" = "404" ] || fail "experiments/list answered $code; expected 404 (removed in MLflow 2)"

step "Production alias: GET /api/2.0/mlflow/registered-models/alias?name=$MODEL&alias=production"
version="$(curl -fsS -G "$MLFLOW_URL/api/2.0/mlflow/registered-models/alias" \
  --data-urlencode "name=$MODEL" --data-urlencode "alias=production" \
  | jq -er '.model_version.version')" || fail "no production alias on $MODEL"
echo "production = version $version"

step "Where its files are: GET /api/2.0/mlflow/model-versions/get-download-uri"
curl -fsS -G "$MLFLOW_URL/api/2.0/mlflow/model-versions/get-download-uri" \
  --data-urlencode "name=$MODEL" --data-urlencode "version=$version" \
  | jq -er '.artifact_uri' || fail "no download URI"

step "Artifacts are proxied by the server: GET /api/2.0/mlflow-artifacts/artifacts"
curl -fsS "$MLFLOW_URL/api/2.0/mlflow-artifacts/artifacts" | jq -e '.files | length > 0' \
  >/dev/null || fail "the served artifact store lists nothing"
if [ -n "${ARTIFACTS_DIR:-}" ]; then
  step "Artifact files on the server's disk: ls $ARTIFACTS_DIR"
  find "$ARTIFACTS_DIR" -name MLmodel | grep -q . || fail "no MLmodel under $ARTIFACTS_DIR"
  ls -la "$ARTIFACTS_DIR"
fi

step "Unknown Host headers are refused (add them to --allowed-hosts): expect 403"
code="$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: not-allowed.example' \
  -X POST "$MLFLOW_URL/api/2.0/mlflow/experiments/search" \
  -H 'Content-Type: application/json' -d '{"max_results": 1}')"
[ "$code" = "403" ] || fail "a foreign Host header got $code, expected 403"

step "Database schema is current: mlflow db upgrade \$MLFLOW_BACKEND_STORE_URI"
"$MLFLOW_BIN" db upgrade "$MLFLOW_BACKEND_STORE_URI" || fail "mlflow db upgrade failed"

if [ -n "${PREDICTOR_URL:-}" ]; then
  step "Predictor: curl -fsS $PREDICTOR_URL/readyz and /v1/model"
  curl -fsS "$PREDICTOR_URL/healthz" >/dev/null || fail "predictor /healthz"
  curl -fsS "$PREDICTOR_URL/readyz" >/dev/null || fail "predictor not ready (no model loaded)"
  served="$(curl -fsS "$PREDICTOR_URL/v1/model" | jq -er '.version')"
  echo "predictor serves version $served"
  [ "$served" = "$version" ] || fail "predictor serves v$served, production is v$version"
fi

if [ -n "${SENSORGUARD_STORE_URL:-}" ]; then
  step "Readings store schema: sensorguard db current --url \$SENSORGUARD_STORE_URL"
  "$SENSORGUARD_BIN" db current --url "$SENSORGUARD_STORE_URL" | tee /dev/stderr \
    | grep -q "current: 0" || fail "readings store not migrated (run sensorguard db upgrade)"
fi

printf '\nall troubleshooting checks passed\n'
