# SensorGuard application image: the `sensorguard` CLI, used by the trainer, the
# predictor and (built with SENSORGUARD_EXTRAS=airflow) the Airflow services.
#
# Dependencies are pinned by requirements.lock (used as constraints, so only what the
# chosen extras need is installed). Build from the repository root:
#   docker build -f deploy/app.Dockerfile -t sensorguard .
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS builder
ARG SENSORGUARD_EXTRAS=""
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml requirements.lock README.md ./
COPY src ./src
RUN grep -v '^-e ' requirements.lock > /tmp/constraints.txt \
    && pip install --no-cache-dir -c /tmp/constraints.txt \
       ".${SENSORGUARD_EXTRAS:+[$SENSORGUARD_EXTRAS]}"

FROM python:${PYTHON_VERSION}-slim
RUN useradd --create-home --uid 10001 sensorguard \
    && mkdir -p /data /home/sensorguard/.sensorguard \
    && chown sensorguard /data /home/sensorguard/.sensorguard
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SENSORGUARD_HOME=/home/sensorguard/.sensorguard
USER sensorguard
WORKDIR /home/sensorguard
EXPOSE 8000
# The predictor; the trainer and Airflow override the command.
CMD ["sensorguard", "serve", "--host", "0.0.0.0", "--port", "8000"]
