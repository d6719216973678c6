"""Predictor cost per request in CPU instructions (callgrind): this tree versus another.

Wall-clock and CPU-time figures of ``bench_serving.py`` drift by ±20 % on a shared
2-core machine, which hides a 5 % change. Instructions do not: ``valgrind --tool=callgrind``
counts the same total for the same code and input whatever else the machine runs. Each
tree's ``sensorguard serve`` runs under callgrind with instrumentation off; for each case
the script sends a few warm-up requests, switches counting on (``callgrind_control -i on``),
sends N requests on one keep-alive connection, switches it off and dumps. Reported: the
instructions of the event-loop thread per request (background threads, such as the
registry poller, run on wall time, which valgrind stretches about 50×, so they are left
out), and this tree's ratio to the other.

Both trees serve the **same model version**, registered by the ``--compare-src`` tree
(an older tree may not read newer versions; this tree loads older unsigned ones with
``SENSORGUARD_ALLOW_UNSIGNED_MODELS=true``, its migration setting), so data-dependent
work (state runs, sorting) is the same.

    .venv/bin/python benchmarks/bench_serving_cost.py --compare-src ../old-checkout/src

Needs valgrind (``apt-get install -y valgrind``). About 4 minutes for two trees. Not a
test: nothing is asserted; figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sensorguard.data.simulator import SENSORS

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
BENCH_SERVING = HERE / "bench_serving.py"
# one operating point of the simulated pump, in SENSORS order
BASE = (1480.0, 50.0, 1.2, 6.0, 30.0, 15.0, 2.0, 60.0, 40.0)


def _body(batch: int, layout: str) -> bytes:
    # readings spread a little around one operating point, with a few repeats: the same
    # bytes for every tree and run
    rows = [
        {s: round(v * (1 + 0.0007 * (i % 50)), 4) for s, v in zip(SENSORS, BASE, strict=True)}
        for i in range(batch)
    ]
    if layout == "columns":
        return json.dumps({"columns": {s: [r[s] for r in rows] for s in SENSORS}}).encode()
    return json.dumps({"readings": rows}).encode()


def _request(body: bytes) -> bytes:
    return (
        b"POST /v1/predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


def _send(port: int, request: bytes, n: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=600) as s:
        for _ in range(n):
            s.sendall(request)
            buf = b""
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    raise RuntimeError("the predictor closed the connection")
                buf += chunk
                head, sep, rest = buf.partition(b"\r\n\r\n")
                if not sep:
                    continue
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                if len(rest) >= length:
                    break
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"not a 200: {head[:200]!r} {rest[:300]!r}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the predictor exited before it was ready")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET /readyz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"the predictor was not ready within {timeout:.0f} s")


def _measure(
    src: Path,
    home: Path,
    cases: list[tuple[str, bytes, int]],
    work: Path,
    tag: str,
    cache_sim: bool = False,
) -> dict[str, float]:
    port = _free_port()
    out = work / f"callgrind-{tag}.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENSORGUARD_", "MLFLOW_"))}
    env.update(
        PYTHONPATH=str(src),
        SENSORGUARD_HOME=str(home),
        SENSORGUARD_ALLOW_UNSIGNED_MODELS="true",
        # the registry poller would run hundreds of times under valgrind's slow clock
        SENSORGUARD_POLL_INTERVAL="3600",
        # set and dict layouts follow the string hash seed; fixed, the counts repeat
        # (with random seeds they moved by about 1 % between runs of the same tree)
        PYTHONHASHSEED="0",
    )
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--separate-threads=yes",
        "--instr-atstart=no",
        *(["--cache-sim=yes"] if cache_sim else []),
        f"--callgrind-out-file={out}",
        sys.executable,
        "-c",
        "from sensorguard.cli import main; main()",
        "serve",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    log = (work / f"serve-{tag}.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    pid = str(proc.pid)
    result: dict[str, float] = {}
    try:
        _ready(port, proc, 900)
        for name, body, n in cases:
            req = _request(body)
            _send(port, req, 20)  # warm-up: first-call costs, caches
            subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
            subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
            _send(port, req, n)
            subprocess.run(["callgrind_control", "-i", "off", pid], check=True, capture_output=True)
            before = set(glob.glob(f"{out}*"))
            subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
            time.sleep(1)
            dumps = [p for p in set(glob.glob(f"{out}*")) - before if p.endswith("-01")]
            if len(dumps) != 1:
                raise RuntimeError(f"expected one dump of the main thread, got {dumps}")
            text = Path(dumps[0]).read_text().splitlines()
            events = next(line.split()[1:] for line in text if line.startswith("events:"))
            totals = next(line.split()[1:] for line in text if line.startswith("totals:"))
            per = {e: int(v) / n for e, v in zip(events, totals, strict=False)}
            result[name] = per["Ir"]
            extra = ""
            if cache_sim:
                # last-level misses (instruction, data read, data write) per request
                ll = per.get("ILmr", 0) + per.get("DLmr", 0) + per.get("DLmw", 0)
                result[f"{name} LL misses"] = ll
                extra = f", {ll:,.0f} LL misses/request"
                keep = work / f"callgrind-{tag}-{name.replace(' ', '_')}.out"
                Path(dumps[0]).rename(keep)
                extra += f" ({keep}: callgrind_annotate --inclusive=yes {keep})"
            print(
                f"  {tag:>8} {name:<22} {per['Ir']:>14,.0f} instructions/request{extra}",
                flush=True,
            )
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--compare-src", type=Path, help="the other tree's src/ (e.g. an old checkout)")
    ap.add_argument("--requests", type=int, default=1000, help="measured requests at batch 1")
    ap.add_argument("--rows", type=int, default=5000, help="training rows of the model")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument(
        "--cache-sim",
        action="store_true",
        help="also simulate the caches (valgrind's model, not this CPU's): last-level "
        "misses per request, and the dumps are kept for callgrind_annotate (slower)",
    )
    ap.add_argument(
        "--cases", default="", help="comma-separated case names to run [all], e.g. 'batch 1000'"
    )
    args = ap.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("valgrind not found: apt-get install -y valgrind")
    work = Path(tempfile.mkdtemp(prefix="sg-bench-cost-"))
    home = work / "home"
    register_src = args.compare_src.resolve() if args.compare_src else SRC
    print(f"workdir {work}; registering one model with {register_src} ...", flush=True)
    subprocess.run(
        [
            sys.executable,
            str(BENCH_SERVING),
            "--register-only",
            str(home),
            "--rows",
            str(args.rows),
        ],
        env={**os.environ, "PYTHONPATH": str(register_src)},
        check=True,
        capture_output=True,
    )
    n1 = args.requests
    nk = max(10, n1 // 20)
    cases = [
        ("batch 1", _body(1, "records"), n1),
        ("batch 1000", _body(1000, "records"), nk),
        ("batch 1000 (columns)", _body(1000, "columns"), nk),
    ]
    if args.cases:
        wanted = {c.strip() for c in args.cases.split(",")}
        cases = [c for c in cases if c[0] in wanted]
    trees: list[tuple[str, Path]] = [("this", SRC)]
    if args.compare_src:
        trees.append(("compare", args.compare_src.resolve()))
    results: dict[str, dict[str, float]] = {}
    for tag, src in trees:
        # each tree on its own copy of the home: a tree may write to it (signing key)
        tree_home = work / f"home-{tag}"
        shutil.copytree(home, tree_home)
        results[tag] = _measure(src, tree_home, cases, work, tag, args.cache_sim)

    print("\n| case | this tree (instructions/request) |", end="")
    if args.compare_src:
        print(" compare tree | this / compare |")
        print("|---|---:|---:|---:|")
    else:
        print("\n|---|---:|")
    for name, _, _ in cases:
        mine = results["this"][name]
        row = f"| {name} | {mine:,.0f} |"
        if args.compare_src:
            other = results["compare"][name]
            row += f" {other:,.0f} | {mine / other:.3f} |"
        print(row)
        if args.cache_sim:
            ll = f"{name} LL misses"
            row = f"| {name}: last-level misses | {results['this'][ll]:,.0f} |"
            if args.compare_src:
                other = results["compare"][ll]
                row += f" {other:,.0f} | {results['this'][ll] / max(other, 1):.2f} |"
            print(row)
    if args.json:
        out: dict[str, Any] = {"results": results, "workdir": str(work)}
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
