"""The docker-compose deployment: validated by docker-compose itself (no engine needed),
then checked for what the engine would only reveal at run time."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.pg import PG_URL, pg_available
from support.services import require_service
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret",
    "MLFLOW_DB_PASSWORD": "mlflow-secret",
    "READINGS_DB_PASSWORD": "readings-secret",
    "AIRFLOW_DB_PASSWORD": "airflow-secret",
    "GRAFANA_ADMIN_PASSWORD": "grafana-secret",
    "MQTT_PASSWORD": "mqtt-secret",
    "MLFLOW_ADMIN_PASSWORD": "mlflow-admin-secret",
    "MLFLOW_SECRET_KEY": "mlflow-flask-secret",
    "SENSORGUARD_SIGNING_KEY": "model-signing-key",
}


def _compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    require_service(exe is not None, "docker-compose (Debian package) is not installed")
    assert exe is not None
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        [exe, "--project-directory", str(ROOT), "-f", str(COMPOSE), *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    res = _compose("config", env=SECRETS)
    assert res.returncode == 0, res.stderr
    return yaml.safe_load(res.stdout)  # type: ignore[no-any-return]


def test_compose_file_validates() -> None:
    res = _compose("config", "-q", env=SECRETS)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_to_start_without_each_secret(missing: str) -> None:
    env = {k: v for k, v in SECRETS.items() if k != missing}
    res = _compose("config", "-q", env=env)
    assert res.returncode != 0
    assert f"set {missing} in .env" in res.stderr


def test_env_example_has_no_usable_passwords() -> None:
    res = _compose("--env-file", str(ROOT / ".env.example"), "config", "-q")
    assert res.returncode != 0 and "in .env" in res.stderr


def test_every_service_is_health_checked_or_waits_for_health(config: dict[str, Any]) -> None:
    services = config["services"]
    assert {"postgres", "mlflow", "trainer", "predictor", "prometheus", "grafana"} <= set(services)
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        conditions = [d.get("condition") for d in deps.values()] if isinstance(deps, dict) else []
        assert "healthcheck" in svc or (conditions and all(conditions)), name
    assert services["postgres"]["healthcheck"]["test"][-1].startswith("pg_isready")
    assert services["predictor"]["depends_on"]["mlflow"]["condition"] == "service_healthy"
    assert "/readyz" in " ".join(services["predictor"]["healthcheck"]["test"])
    assert "/health" in " ".join(services["mlflow"]["healthcheck"]["test"])


def _port_pairs(svc: dict[str, Any]) -> set[str]:
    pairs = set()
    for p in svc.get("ports", []):
        if isinstance(p, dict):
            pairs.add(f"{p['published']}:{p['target']}")
        else:
            pairs.add(str(p).split("/")[0])
    return pairs


def test_mlflow_serves_artifacts_from_the_volume(config: dict[str, Any]) -> None:
    mlflow = config["services"]["mlflow"]
    cmd = mlflow["command"]
    assert "--serve-artifacts" in cmd
    dest = cmd[cmd.index("--artifacts-destination") + 1]
    assert dest == "/mlflow/artifacts"
    mounts = {
        (v["source"], v["target"]) if isinstance(v, dict) else tuple(v.split(":")[:2])
        for v in mlflow["volumes"]
    }
    assert ("mlflow_data", dest) in mounts
    hosts = cmd[cmd.index("--allowed-hosts") + 1].split(",")
    assert {"mlflow", "mlflow:5000", "localhost:5001", "127.0.0.1:5001"} <= set(hosts)
    assert cmd[cmd.index("--workers") + 1] == "1"
    env = mlflow["environment"]
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://mlflow:")


def test_mlflow_is_not_published_and_requires_a_login(config: dict[str, Any]) -> None:
    # whoever can write the registry decides what the predictor loads: no host port by
    # default, and MLflow's basic-auth app in front of every API
    mlflow = config["services"]["mlflow"]
    assert not mlflow.get("ports"), mlflow.get("ports")
    cmd = mlflow["command"]
    assert cmd[cmd.index("--app-name") + 1] == "basic-auth"
    env = mlflow["environment"]
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == SECRETS["MLFLOW_ADMIN_PASSWORD"]
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == SECRETS["MLFLOW_SECRET_KEY"]
    ini = (ROOT / "deploy" / "mlflow" / "basic_auth.ini").read_text()
    assert "default_permission = NO_PERMISSIONS" in ini and "admin_password" not in ini
    for name in ("trainer", "predictor", "airflow-scheduler"):
        app_env = config["services"][name]["environment"]
        assert app_env["MLFLOW_TRACKING_PASSWORD"] == SECRETS["MLFLOW_ADMIN_PASSWORD"], name
        assert app_env["SENSORGUARD_SIGNING_KEY"] == SECRETS["SENSORGUARD_SIGNING_KEY"], name
    dockerfile = (ROOT / "deploy" / "mlflow.Dockerfile").read_text()
    assert "Flask-WTF" in dockerfile and '"--app-name", "basic-auth"' in dockerfile
    assert not (ROOT / "mlflow").exists()  # a root folder `mlflow/` shadows the package


def test_mlflow_ui_override_binds_loopback_only() -> None:
    res = _compose("-f", str(ROOT / "deploy" / "compose.mlflow-ui.yml"), "config", env=SECRETS)
    assert res.returncode == 0, res.stderr
    ports = yaml.safe_load(res.stdout)["services"]["mlflow"]["ports"]
    assert len(ports) == 1
    p = ports[0]
    host_ip = p.get("host_ip") if isinstance(p, dict) else str(p).split(":")[0]
    assert host_ip == "127.0.0.1", ports


def test_each_service_has_its_own_database(config: dict[str, Any]) -> None:
    services = config["services"]
    mlflow_db = services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"].rsplit("/", 1)[1]
    readings_db = services["predictor"]["environment"]["SENSORGUARD_STORE_URL"].rsplit("/", 1)[1]
    assert services["trainer"]["environment"]["SENSORGUARD_STORE_URL"].endswith(readings_db)
    assert mlflow_db != readings_db
    assert services["predictor"]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


def test_dockerfile_matches_installed_mlflow() -> None:
    import mlflow

    text = (ROOT / "deploy" / "mlflow.Dockerfile").read_text()
    version = re.search(r"^ARG MLFLOW_VERSION=(\S+)", text, re.M)
    assert version and version.group(1) == mlflow.__version__
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(froms) == 2  # multi-stage
    assert all(f == "ghcr.io/mlflow/mlflow:v${MLFLOW_VERSION}" for f in froms)
    assert "psycopg2-binary" in text and "curl" in text
    assert '"--serve-artifacts", "--artifacts-destination", "/mlflow/artifacts"' in text
    assert "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false" in text


def test_env_example_documents_every_variable() -> None:
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text()))
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^# \| ([A-Z][A-Z0-9_]*) ", example, re.M))
    assert used - documented == set()
    # the deployment guide documents the core services, airflow.md the Airflow ones
    docs = "".join((ROOT / "docs" / f).read_text() for f in ("deployment.md", "airflow.md"))
    assert {v for v in used if not re.search(rf"\b{v}\b", docs)} == set()
    for secret in SECRETS:  # present, empty: compose refuses until filled in
        assert re.search(rf"^{secret}=$", example, re.M), secret


def test_trainer_uses_existing_cli_options(config: dict[str, Any]) -> None:
    from sensorguard.cli import app

    script = config["services"]["trainer"]["command"][-1]
    runner = CliRunner()
    calls = [shlex.split(part.strip()) for part in re.split(r"[;&|]+", script)]
    calls = [c[c.index("sensorguard") :] for c in calls if "sensorguard" in c]
    assert [c[1] for c in calls] == ["db", "simulate", "ingest", "store", "train"]
    for call in calls:
        words = [w for w in call[1:] if not w.startswith("-") and not w.startswith("$")]
        sub = words[:2] if words[0] in ("db", "store") else words[:1]
        res = runner.invoke(app, [*sub, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0, (sub, res.output)
        for opt in (w for w in call if w.startswith("--")):
            assert opt in res.output, (sub, opt)


def test_grafana_dashboard_queries_metrics_the_predictor_exports() -> None:
    from prometheus_client import generate_latest

    from sensorguard.live.watch import WatchMetrics
    from sensorguard.serving.metrics import ServingMetrics

    # the predictor's metrics, and the watch service's (ingestion, notify, watch loop)
    exported = generate_latest(ServingMetrics().registry).decode()
    exported += generate_latest(WatchMetrics().live.registry).decode()
    names = set(re.findall(r"^# TYPE (\S+) (\w+)", exported, re.M))
    series = set()
    for name, kind in names:
        series.add(name)
        if kind == "counter":
            series.add(name + "_total")
        if kind == "histogram":
            series.update({name + "_bucket", name + "_count", name + "_sum"})
    dash = json.loads((ROOT / "deploy/grafana/dashboards/sensorguard.json").read_text())
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("score", "sensor", "model version", "latency"):
        assert topic in titles
    for panel in dash["panels"]:
        for target in panel["targets"]:
            used = set(re.findall(r"\b(sensorguard_[a-z_]+)", target["expr"]))
            assert used and used <= series, (panel["title"], used - series)
    ds = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    assert ds["datasources"][0]["uid"] == dash["panels"][0]["datasource"]["uid"]
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = [
        t for job in prom["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    ]
    assert "predictor:8000" in targets


def test_airflow_section_is_marked() -> None:
    text = COMPOSE.read_text()
    assert "# >>> airflow services >>>" in text and "# <<< airflow services <<<" in text


@pytest.mark.postgres
def test_postgres_init_script_creates_separate_databases() -> None:
    """Run the real init script against the local server with unique names."""
    require_service(pg_available(), "PostgreSQL is not reachable at 127.0.0.1:5432")
    require_service(shutil.which("psql") is not None, "psql is not installed")
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    tag = uuid.uuid4().hex[:8]
    names = {k: f"sgtest_init_{k}_{tag}" for k in ("mlflow", "readings", "airflow")}
    admin = make_url(PG_URL)
    env = {
        **os.environ,
        "PGHOST": admin.host or "127.0.0.1",
        "PGPORT": str(admin.port or 5432),
        "POSTGRES_USER": admin.username or "postgres",
    }
    for key, name in names.items():
        env[f"{key.upper()}_DB_NAME"] = name
        env[f"{key.upper()}_DB_USER"] = name + "_u"
        env[f"{key.upper()}_DB_PASSWORD"] = f"pw'{key}\"; DROP"  # quoting is psql's job
    script = ROOT / "deploy/postgres/init/01-create-databases.sh"
    engine = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        for _ in range(2):  # idempotent
            res = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
            assert res.returncode == 0, res.stderr
        with engine.connect() as conn:
            owners = dict(
                conn.execute(
                    sa.text(
                        "SELECT d.datname, r.rolname FROM pg_database d "
                        "JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname LIKE :p"
                    ),
                    {"p": f"sgtest_init_%_{tag}"},
                ).all()
            )
        assert owners == {name: name + "_u" for name in names.values()}
        bad = {**env, "AIRFLOW_DB_PASSWORD": ""}
        res = subprocess.run(["bash", str(script)], env=bad, capture_output=True, text=True)
        assert res.returncode != 0 and "set it in .env" in res.stderr
    finally:
        with engine.connect() as conn:
            for name in names.values():
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(sa.text(f'DROP ROLE IF EXISTS "{name}_u"'))
        engine.dispose()


def test_build_contexts_have_what_the_dockerfiles_copy(config: dict[str, Any]) -> None:
    for name, svc in config["services"].items():
        build = svc.get("build")
        if not build:
            continue
        dockerfile = Path(build["context"]) / build.get("dockerfile", "Dockerfile")
        assert dockerfile.exists(), (name, dockerfile)
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY") and "--from=" not in line:
                *sources, _dest = [w for w in line.split()[1:] if not w.startswith("--")]
                for src in sources:
                    assert (Path(build["context"]) / src).exists(), (name, src)
    app_file = (ROOT / "deploy" / "app.Dockerfile").read_text()
    assert "requirements.lock" in app_file and "USER sensorguard" in app_file
