"""The predictor's own cost per request, in-process: this tree versus others.

``bench_serving.py`` measures through uvicorn and sockets with ``wrk``; on a shared
2-core VM its rounds move by ±10-15 %. This script calls each tree's ASGI app directly
(no socket, no HTTP parser, no load generator competing for the two cores), so what it
times is ``POST /v1/predict`` itself: parsing, scoring, ranking, encoding. Per tree and
round a fresh process loads the same model version (registered once by the first
``--compare-src`` tree, or by this tree), waits until the model pool's first round is
over, warms up, and times N requests per case. Reported per tree and case: the median
over rounds of the event-loop thread's CPU µs per request, and the time the cyclic GC's
generation 1 and 2 collections took per request (``gc.callbacks``), with the number of
GC-tracked objects left unfrozen. Trees take turns, in rotating order.

    .venv/bin/python benchmarks/bench_predict_inproc.py --compare-src OLD/src --rounds 6

Not a test: nothing is asserted; figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
CASES = [("batch 1", 1, "records", 2000), ("batch 1000", 1000, "records", 300)]
CASES.append(("batch 1000 (columns)", 1000, "columns", 300))


async def _call(app: Any, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    status: list[int] = []
    chunks: list[bytes] = []

    async def send(msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.start":
            status.append(msg["status"])
        elif msg["type"] == "http.response.body":
            chunks.append(msg.get("body", b""))

    headers = [(b"host", b"bench"), (b"content-type", b"application/json")]
    headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    return status[0], b"".join(chunks)


class _GcClock:
    """A ``gc.callbacks`` entry: the seconds spent in generation 1 and 2 collections."""

    def __init__(self) -> None:
        self.spent = 0.0
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] == 0:
            return
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.spent += time.perf_counter() - self._began


async def _child(cases: list[tuple[str, int, str, int]]) -> dict[str, Any]:
    """One tree, one round (runs in a fresh process with that tree on sys.path)."""
    from bench_serving_cost import _body  # the same request bytes for every tree

    from sensorguard.serving.app import create_app

    app = create_app()
    queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    await queue.put({"type": "lifespan.startup"})
    started = asyncio.Event()

    async def lsend(msg: dict[str, Any]) -> None:
        if msg["type"] == "lifespan.startup.complete":
            started.set()

    life = asyncio.create_task(app({"type": "lifespan"}, queue.get, lsend))
    await asyncio.wait_for(started.wait(), 120)
    for _ in range(1200):
        if (await _call(app, "GET", "/readyz"))[0] == 200:
            break
        await asyncio.sleep(0.1)
    else:
        raise SystemExit("the predictor did not become ready")
    await asyncio.sleep(3)  # the model pool's first round (registry, asset map) is over
    out: dict[str, Any] = {}
    for name, batch, layout, n in cases:
        body = _body(batch, layout)
        for _ in range(10):
            status, answer = await _call(app, "POST", "/v1/predict", body)
            if status != 200:
                raise SystemExit(f"{name}: {status} {answer[:300]!r}")
        clock = _GcClock()
        gc.callbacks.append(clock)
        prof = None
        if os.environ.get("SG_BENCH_PROFILE"):  # --profile: cProfile the timed loop
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        c0 = time.thread_time()
        for _ in range(n):
            await _call(app, "POST", "/v1/predict", body)
        cpu = (time.thread_time() - c0) / n * 1e6
        if prof is not None:
            prof.disable()
            slug = name.replace(" ", "-").replace("(", "").replace(")", "")
            prof.dump_stats(f"{os.environ['SG_BENCH_PROFILE']}-{slug}.prof")
        gc.callbacks.remove(clock)
        out[name] = {"cpu_us": cpu, "gc12_us": clock.spent / n * 1e6}
    out["unfrozen_objects"] = len(gc.get_objects())
    life.cancel()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--compare-src", type=Path, action="append", default=[], help="another src/")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--rows", type=int, default=5000, help="training rows of the model")
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--profile",
        type=Path,
        help="write a cProfile of each tree's timed loop per case to DIR (last round wins); "
        "profiled rounds are slower, so read their ratios from a run without it",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_child(json.loads(args.child)))), flush=True)
        os._exit(0)  # the registry poller's worker threads need not wind down

    trees = [("this", SRC)] + [
        (f"compare {i + 1}", p.resolve()) for i, p in enumerate(args.compare_src)
    ]
    work = Path(tempfile.mkdtemp(prefix="sg-bench-inproc-"))
    home = work / "home"
    register_src = trees[1][1] if len(trees) > 1 else SRC  # the oldest reads only its own
    print(f"workdir {work}; registering one model with {register_src} ...", flush=True)
    rows = ["--rows", str(args.rows)]
    subprocess.run(
        [sys.executable, str(HERE / "bench_serving.py"), "--register-only", str(home), *rows],
        env={**os.environ, "PYTHONPATH": str(register_src)},
        check=True,
        capture_output=True,
    )
    results: dict[str, list[dict[str, Any]]] = {tag: [] for tag, _ in trees}
    for r in range(args.rounds):
        order = trees[r % len(trees) :] + trees[: r % len(trees)]
        for tag, src in order:
            tree_home = work / f"home-{tag.replace(' ', '-')}"
            if not tree_home.exists():
                shutil.copytree(home, tree_home)
            env = {
                k: v for k, v in os.environ.items() if not k.startswith(("SENSORGUARD_", "MLFLOW_"))
            }
            env.update(
                PYTHONPATH=f"{src}{os.pathsep}{HERE}",
                SENSORGUARD_HOME=str(tree_home),
                SENSORGUARD_ALLOW_UNSIGNED_MODELS="true",
                SENSORGUARD_POLL_INTERVAL="3600",
                PYTHONHASHSEED="0",
            )
            if args.profile:
                args.profile.mkdir(parents=True, exist_ok=True)
                env["SG_BENCH_PROFILE"] = str(args.profile / tag.replace(" ", "-"))
            proc = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(CASES)],
                env=env,
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                sys.exit(f"{tag} ({src}) failed:\n{proc.stderr[-3000:]}")
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            results[tag].append(res)
            cells = ", ".join(f"{n} {res[n]['cpu_us']:,.0f} µs" for n, *_ in CASES)
            print(f"  round {r + 1} {tag:<10} {cells}", flush=True)

    print("\nmedian over rounds: CPU µs per request (GC generations 1-2 µs per request)")
    print("| tree | " + " | ".join(n for n, *_ in CASES) + " | unfrozen GC objects |")
    print("|---|" + "---:|" * (len(CASES) + 1))
    for tag, src in trees:
        rs = results[tag]
        row = [
            f"{statistics.median(x[n]['cpu_us'] for x in rs):,.0f} "
            f"({statistics.median(x[n]['gc12_us'] for x in rs):.1f})"
            for n, *_ in CASES
        ]
        objs = statistics.median(x["unfrozen_objects"] for x in rs)
        print(f"| {tag} `{src}` | " + " | ".join(row) + f" | {objs:,.0f} |")
    if len(trees) > 1:
        print("\nthis tree / other, CPU per request (median of the rounds' ratios; < 1 = cheaper)")
        for tag, _src in trees[1:]:
            ratios = [
                statistics.median(
                    a[n]["cpu_us"] / b[n]["cpu_us"]
                    for a, b in zip(results["this"], results[tag], strict=True)
                )
                for n, *_ in CASES
            ]
            print(
                f"  vs {tag}: "
                + ", ".join(f"{n} {q:.3f}" for (n, *_), q in zip(CASES, ratios, strict=True))
            )
    if args.json:
        args.json.write_text(
            json.dumps({"trees": {t: str(s) for t, s in trees}, "results": results}, indent=1)
        )


if __name__ == "__main__":
    main()
