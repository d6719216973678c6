"""Predictor throughput: ``sensorguard serve`` versus ``mlflow models serve``.

One model version is trained on simulated pump readings and registered in a temporary
embedded registry. The same version is then served by

* ``mlflow models serve -m models:/<name>/1 --env-manager local --workers 1``
  (``POST /invocations`` with ``{"dataframe_records": [...]}``), and
* ``sensorguard serve`` (``POST /v1/predict`` with ``{"readings": [...]}``, and the
  columnar ``{"columns": {...}}`` form as an extra row),

both with one worker, all started before the first measurement and measured in turn
(in alternating order when ``--rounds`` > 1), on loopback. Load comes from
``wrk`` (``apt-get install -y wrk``) with keep-alive connections for a bounded time per
case, at batch 1 and batch 1,000. Reported: requests/s, readings/s, p50 and p99 latency,
server CPU time per request (from /proc: robust when the machine is shared), and the
ratio to ``mlflow models serve``. Every response is checked to be 2xx.

    .venv/bin/python benchmarks/bench_serving.py --duration 10
    .venv/bin/python benchmarks/bench_serving.py --compare-src ../old-checkout/src  # before/after

``--compare-src`` adds the predictor of another source tree (the same model, trained and
registered by that tree) to the same run and prints this tree's ratios against it.

Not a test: nothing is asserted; figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tree_stat(pid: int) -> dict[str, float]:
    """CPU seconds (utime + stime), kernel seconds (stime) and minor page faults of
    ``pid`` and all its descendants (mlflow serves in a child)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, int, int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        f = raw.rsplit(")", 1)[1].split()
        stats[int(entry)] = (int(f[1]), int(f[11]), int(f[12]), int(f[7]))
    out = {"cpu": 0.0, "sys": 0.0, "minflt": 0.0}
    todo = [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            _ppid, ut, st, mf = stats[p]
            out["cpu"] += (ut + st) / tick
            out["sys"] += st / tick
            out["minflt"] += mf
        todo.extend(c for c, (ppid, *_rest) in stats.items() if ppid == p)
    return out


def _wait(url: str, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not become ready in {timeout} s")


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"cannot parse wrk latency {text!r}")
    return float(m.group(1)) * _UNIT[m.group(2)]


def _percentile(out: str, pct: int) -> float:
    r"""One line of wrk's "Latency Distribution" block, e.g. ``     99%   61.22ms``.

    Anchored to its own line inside that block: a bare ``99%\s+(\S+)`` also matched the
    "+/- Stdev" column of the thread stats (``62.50%`` followed by ``Latency``) under
    load at batch 1,000."""
    block = out.split("Latency Distribution", 1)
    if len(block) != 2:
        raise ValueError(f"no latency distribution in the wrk output:\n{out}")
    m = re.search(rf"^\s*{pct}%\s+(\S+)\s*$", block[1], re.MULTILINE)
    if not m:
        raise ValueError(f"no {pct}% line in the wrk output:\n{out}")
    return _ms(m.group(1))


def _wrk(
    url: str, body: bytes, duration: float, connections: int, threads: int, work: Path
) -> dict[str, Any]:
    body_file = work / f"body-{abs(hash(body))}.json"
    body_file.write_bytes(body)
    script = work / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'local f = io.open("{body_file}", "rb")\n'
        "wrk.body = f:read('*all')\n"
        "f:close()\n"
    )
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = _percentile(out, 50)
    p99 = _percentile(out, 99)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "requests": total,
        "p50_ms": p50,
        "p99_ms": p99,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1) if errors else "",
    }


def _train_and_register(home: Path, rows: int) -> tuple[str, Any]:
    os.environ["SENSORGUARD_HOME"] = str(home)
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        os.environ.pop(var, None)
    import mlflow

    from sensorguard.config import get_settings
    from sensorguard.data.simulator import simulate_pump
    from sensorguard.detectors import make_detector
    from sensorguard.pipelines.drift import training_profile
    from sensorguard.registry import (
        configure_mlflow,
        ensure_experiment,
        get_client,
        log_detector_model,
        register_model_version,
    )

    get_settings.cache_clear()
    settings = get_settings()
    df = simulate_pump(days=rows / 1440, seed=0, failures=False)
    from sensorguard.data.simulator import SENSORS

    X = df[list(SENSORS)]
    detector = make_detector("operating-states", max_states=4).fit(X)
    configure_mlflow(settings)
    exp = ensure_experiment(settings.experiment, settings)
    with mlflow.start_run(experiment_id=exp) as run:
        # with the training profile every trained version carries (the predictor's
        # regime rule judges each asset's first 60 readings against its ranges); a tree
        # older than profiles inside the model logs it without
        try:
            info = log_detector_model(detector, X.head(5), training_profile=training_profile(X))
        except TypeError:
            info = log_detector_model(detector, X.head(5))
    mv = register_model_version(info.model_uri, run.info.run_id, settings.model_name, {}, settings)
    get_client(settings).set_registered_model_alias(
        settings.model_name, settings.production_alias, mv.version
    )
    return settings.model_name, X


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of load per case")
    ap.add_argument("--connections", type=int, default=8, help="wrk keep-alive connections")
    ap.add_argument("--batches", default="1,1000", help="comma-separated batch sizes")
    ap.add_argument("--rows", type=int, default=20_000, help="training rows")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--skip-mlflow", action="store_true", help="only sensorguard serve")
    ap.add_argument(
        "--compare-src",
        type=Path,
        action="append",
        default=[],
        help="also serve with the sensorguard package of this source folder (e.g. an older "
        "checkout's src/), for before/after ratios in the same run; repeat it to add "
        "several trees (e.g. the old tree and this tree's own src/ as the null control)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every case this many times, the servers in turn and in alternating "
        "order (the load of a shared machine drifts; with --compare-src the median of the "
        "rounds' ratios is printed). --compare-src with this tree's own src/ measures the "
        "protocol's noise: its ratios should be 1",
    )
    ap.add_argument("--register-only", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.register_only:  # the compare tree registers its own copy (its own loader)
        _train_and_register(args.register_only, args.rows)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")

    work = Path(tempfile.mkdtemp(prefix="sg-bench-serving-"))
    home = work / "home"
    print(f"workdir {work}; training and registering one model ...", flush=True)
    name, X = _train_and_register(home, args.rows)
    sensors = list(X.columns)
    rng = np.random.default_rng(1)
    batches = [int(b) for b in args.batches.split(",")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENSORGUARD_", "MLFLOW_"))}
    env["SENSORGUARD_HOME"] = str(home)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # mlflow execs `uvicorn`
    tracking = f"sqlite:///{(home / 'mlflow.db').resolve()}"

    def records(n: int) -> list[dict[str, float | None]]:
        # simulated dropouts (NaN) become null: NaN is not JSON
        idx = rng.integers(0, len(X), n)
        return [
            {s: (float(v) if np.isfinite(v) else None) for s, v in zip(sensors, row, strict=True)}
            for row in X.values[idx]
        ]

    payloads = {b: records(b) for b in batches}
    servers: list[dict[str, Any]] = []
    if not args.skip_mlflow:
        servers.append(
            {
                "name": "mlflow models serve",
                "cmd": [
                    str(BIN / "mlflow"),
                    "models",
                    "serve",
                    "-m",
                    f"models:/{name}/1",
                    "--env-manager",
                    "local",
                    "--workers",
                    "1",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    "{port}",
                ],
                "env": {**env, "MLFLOW_TRACKING_URI": tracking},
                "ready": "/ping",
                "path": "/invocations",
                "bodies": {
                    b: json.dumps({"dataframe_records": p}).encode() for b, p in payloads.items()
                },
            }
        )
    sg_bodies: dict[int | str, bytes] = {
        b: json.dumps({"readings": p}).encode() for b, p in payloads.items()
    }
    for b, p in payloads.items():
        if b >= 100:
            cols = {s: [r[s] for r in p] for s in sensors}
            sg_bodies[f"{b} (columns)"] = json.dumps({"columns": cols}).encode()
    servers.append(
        {
            "name": "sensorguard serve",
            "cmd": [str(BIN / "sensorguard"), "serve", "--port", "{port}"],
            "env": env,
            "ready": "/readyz",
            "path": "/v1/predict",
            "bodies": sg_bodies,
        }
    )
    own = servers[-1]
    for i, compare_src in enumerate(args.compare_src):
        # the same model trained and registered by the other tree, in its own home: a
        # version's files are written by the code that registers it
        other = work / f"compare-home-{i}"
        src = str(compare_src.resolve())
        subprocess.run(
            [sys.executable, __file__, "--register-only", str(other), "--rows", str(args.rows)],
            env={**env, "PYTHONPATH": src},
            check=True,
            capture_output=True,
        )
        servers.append(
            {
                **own,
                "name": f"sensorguard serve (compare {i + 1})",
                "compare_src": compare_src,
                "env": {**env, "PYTHONPATH": src, "SENSORGUARD_HOME": str(other)},
            }
        )

    results: list[dict[str, Any]] = []
    # Every server is started and ready before the first measurement, and stays up to the
    # end; the cases then take turns. Started one after the other (the previous protocol),
    # the server started first in a round measured 1.08-1.28x the second when both were
    # this very tree: the order, not the code, set the ratio. Now round r measures the
    # servers in order (r even) or in reverse (r odd), so each is first equally often;
    # with three or more, the order is also rotated by r so that no server is always
    # in the middle.
    running: list[tuple[dict[str, Any], subprocess.Popen[bytes], str]] = []
    try:
        for srv in servers:
            port = _free_port()
            cmd = [c.replace("{port}", str(port)) for c in srv["cmd"]]
            log = work / f"{srv['name'].replace(' ', '_')}.log"
            running.append((srv, _start(cmd, srv["env"], log), f"http://127.0.0.1:{port}"))
        for srv, proc, base in running:
            t0 = time.monotonic()
            log = work / f"{srv['name'].replace(' ', '_')}.log"
            _wait(base + srv["ready"], 600, proc, log)
            print(f"{srv['name']}: ready after {time.monotonic() - t0:.1f} s", flush=True)
        labels = list(dict.fromkeys(label for srv in servers for label in srv["bodies"]))
        for label in labels:
            present = [r for r in running if label in r[0]["bodies"]]
            batch = int(str(label).split()[0])
            for srv, _proc, base in present:
                body = srv["bodies"][label]
                check = httpx.post(
                    base + srv["path"],
                    content=body,
                    headers={"content-type": "application/json"},
                    timeout=60,
                )
                check.raise_for_status()
                _wrk(base + srv["path"], body, 2, args.connections, 1, work)  # warm-up
            # throughput with N connections; at batch 1 also latency with one connection
            runs = [args.connections] + ([1] if batch == 1 and args.connections > 1 else [])
            for conns in runs:
                for rnd in range(args.rounds):
                    turn = present[rnd % len(present) :] + present[: rnd % len(present)]
                    for srv, proc, base in turn if rnd % 2 == 0 else turn[::-1]:
                        body = srv["bodies"][label]
                        st0 = _tree_stat(proc.pid)
                        res = _wrk(base + srv["path"], body, args.duration, conns, 1, work)
                        st1 = _tree_stat(proc.pid)
                        cpu = st1["cpu"] - st0["cpu"]
                        nreq = max(res["requests"], 1)
                        row = {
                            "server": srv["name"],
                            "round": rnd,
                            "batch": batch,
                            "payload": str(label),
                            "connections": conns,
                            **res,
                            "readings_per_s": res["rps"] * batch,
                            "cpu_us_per_request": cpu / nreq * 1e6,
                            # kernel share and page faults: what instruction counts of
                            # the Python process (callgrind) do not see
                            "sys_us_per_request": (st1["sys"] - st0["sys"]) / nreq * 1e6,
                            "minflt_per_request": (st1["minflt"] - st0["minflt"]) / nreq,
                        }
                        results.append(row)
                        print(
                            f"  {srv['name']}, round {rnd}, batch {label}, {conns} conn: "
                            f"{res['rps']:,.0f} req/s, {row['readings_per_s']:,.0f} "
                            f"readings/s, p50 {res['p50_ms']:.2f} ms, p99 {res['p99_ms']:.2f} "
                            f"ms, cpu {row['cpu_us_per_request']:,.0f} µs/req "
                            f"(kernel {row['sys_us_per_request']:,.0f}, "
                            f"{row['minflt_per_request']:,.1f} page faults), "
                            f"non-2xx {res['non_2xx']}",
                            flush=True,
                        )
    finally:
        for _srv, proc, _base in running:
            _stop(proc)

    base_rows = {
        (r["batch"], r["connections"], r["round"]): r
        for r in results
        if r["server"] == "mlflow models serve"
    }
    print()
    print(
        "| server | batch | connections | requests/s | readings/s | p50 ms | p99 ms "
        "| server CPU µs/req | × mlflow (readings/s) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        ref = base_rows.get((r["batch"], r["connections"], r["round"]))
        ratio = f"{r['readings_per_s'] / ref['readings_per_s']:.1f}×" if ref else "-"
        print(
            f"| {r['server']} | {r['payload']} | {r['connections']} | {r['rps']:,.0f} "
            f"| {r['readings_per_s']:,.0f} "
            f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['cpu_us_per_request']:,.0f} "
            f"| {ratio} |"
        )
    import statistics

    for srv in servers:
        if "compare_src" not in srv:
            continue
        compare = [r for r in results if r["server"] == srv["name"]]
        print(f"\nthis tree vs {srv['compare_src']} (same run; > 1 = this tree is better)")
        print(
            "| batch | connections | readings/s ratio (median, min-max) "
            "| p99 ratio (before/after) | CPU µs/req ratio (before/after) | rounds |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        keys = dict.fromkeys((r["payload"], r["connections"]) for r in compare)
        for payload, conns in keys:
            pairs = [
                (a, b)
                for a in results
                for b in compare
                if a["server"] == "sensorguard serve"
                and (a["payload"], a["connections"], a["round"])
                == (b["payload"], b["connections"], b["round"])
                and a["payload"] == payload
                and a["connections"] == conns
            ]
            if not pairs:
                continue
            med = statistics.median
            rates = [a["readings_per_s"] / b["readings_per_s"] for a, b in pairs]
            p99 = med(b["p99_ms"] / a["p99_ms"] for a, b in pairs)
            cpu = med(b["cpu_us_per_request"] / a["cpu_us_per_request"] for a, b in pairs)
            print(
                f"| {payload} | {conns} | {med(rates):.2f}× ({min(rates):.2f}-{max(rates):.2f}) "
                f"| {p99:.2f}× | {cpu:.2f}× | {len(pairs)} |"
            )
    load = os.getloadavg()
    print(f"\nload average during the run: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "loadavg": load}, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
