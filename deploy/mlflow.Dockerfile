# MLflow tracking server + model registry for SensorGuard, behind MLflow's basic-auth app.
#
# The official image of the same MLflow version as the Python package (tests check the
# two agree), plus the PostgreSQL driver, Flask-WTF (what `mlflow[auth]` adds: the
# basic-auth app's CSRF protection) and curl for the health check. Multi-stage: the
# packages are installed into /install in a throw-away stage, so pip caches and build
# leftovers never reach the final image. (Under deploy/, not in a folder `mlflow/` at the
# project root, which would shadow the `mlflow` package for tools that scan the root.)
ARG MLFLOW_VERSION=3.17.2

FROM ghcr.io/mlflow/mlflow:v${MLFLOW_VERSION} AS builder
RUN pip install --no-cache-dir --prefix=/install "psycopg2-binary>=2.9,<3" "Flask-WTF<2"

FROM ghcr.io/mlflow/mlflow:v${MLFLOW_VERSION}
COPY --from=builder /install /usr/local
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /mlflow/artifacts /mlflow/auth
COPY deploy/mlflow/basic_auth.ini /etc/mlflow/basic_auth.ini

# Lean server, documented in docs/deployment.md: the job runner (7 huey processes, used
# only by GenAI features) is off and one uvicorn worker runs per container. The default
# of 4 workers + jobs needs ~2.2 GB and multi-worker uvicorn adds a keep-alive delay;
# scale with more containers behind a proxy instead.
ENV MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
    MLFLOW_AUTH_CONFIG_PATH=/etc/mlflow/basic_auth.ini \
    PYTHONUNBUFFERED=1

EXPOSE 5000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=5 \
    CMD curl -fsS http://localhost:5000/health || exit 1

# Authentication (`--app-name basic-auth`): every request but /health needs a user. At run
# time set MLFLOW_AUTH_ADMIN_USERNAME / MLFLOW_AUTH_ADMIN_PASSWORD (the admin is created on
# first start; MLflow ships no default password) and MLFLOW_FLASK_SERVER_SECRET_KEY.
# Clients send MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD.
# MLFLOW_BACKEND_STORE_URI (read by `mlflow server` itself) must be set at run time, e.g.
# postgresql+psycopg2://mlflow:PASSWORD@postgres:5432/mlflow — the +psycopg2 matters:
# SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which this image lacks.
# Artifacts are proxied (--serve-artifacts): clients upload/download through the server
# and never need the volume mounted at /mlflow/artifacts.
# --allowed-hosts replaces MLflow's default Host list (localhost + private IPs), so it
# names every Host header clients send: the compose service name and the host port.
CMD ["mlflow", "server", "--app-name", "basic-auth", \
     "--host", "0.0.0.0", "--port", "5000", \
     "--workers", "1", \
     "--serve-artifacts", "--artifacts-destination", "/mlflow/artifacts", \
     "--allowed-hosts", "mlflow,mlflow:5000,localhost,localhost:5000,localhost:5001,127.0.0.1,127.0.0.1:5000,127.0.0.1:5001"]
