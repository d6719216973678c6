"""Shared helpers of the detection-quality benchmark scripts (benchmarks/quality_*.py)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sensorguard.detectors import available_detectors
from sensorguard.evaluation.benchmark import run_benchmark

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def shared_or_exit(sub: str) -> Path:
    """``../shared/data/<sub>`` or exit 0 with a message when it is absent."""
    path = SHARED / sub
    if not path.exists():
        print(f"skipped: {path} not found (reference data lives beside the repository)")
        sys.exit(0)
    return path


def parse_args(doc: str | None, **extra: Any) -> argparse.Namespace:
    """``[DETECTOR ...] [--json FILE] [--param DETECTOR:NAME=JSON ...]`` plus
    script-specific options; ``args.params`` maps detector -> parameters."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("detectors", nargs="*", help="detector names (default: all)")
    parser.add_argument("--json", help="also write every summary to this JSON file")
    parser.add_argument(
        "--param", action="append", default=[], help="DETECTOR:NAME=JSON, repeatable"
    )
    for name, default in extra.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    args = parser.parse_args()
    args.detectors = args.detectors or available_detectors()
    args.params = detector_params(parser, args.param)
    return args


def detector_params(parser: argparse.ArgumentParser, items: list[str]) -> dict[str, dict[str, Any]]:
    """``DETECTOR:NAME=JSON`` items -> {detector: {name: value}}."""
    params: dict[str, dict[str, Any]] = {}
    for item in items:
        det, _, kv = item.partition(":")
        key, _, value = kv.partition("=")
        if not det or not key or not value:
            parser.error(
                f"--param {item!r}: expected DETECTOR:NAME=JSON, e.g. drift-robust:margin=1.1"
            )
        params.setdefault(det, {})[key] = json.loads(value)
    return params


def run_all(
    make_series: Callable[[], Iterable[Any]],
    detectors: list[str],
    *,
    train_rows: int = 400,
    params: dict[str, dict[str, Any]] | None = None,
    window_seconds: float = 60.0,
) -> dict[str, dict[str, Any]]:
    """One summary per detector (outputs written to a temporary folder)."""
    out: dict[str, dict[str, Any]] = {}
    for name in detectors:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            try:
                summary = run_benchmark(
                    make_series(),
                    Path(tmp),
                    detector=name,
                    params=(params or {}).get(name),
                    train_rows=train_rows,
                    window_seconds=window_seconds,
                    write_outputs=False,
                )
            except Exception as exc:  # report and carry on with the other detectors
                print(f"{name}: failed: {exc}", file=sys.stderr)
                continue
        summary["seconds"] = round(time.perf_counter() - t0, 1)
        out[name] = summary
    return out


def point_table(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| detector | F1 | FAR % | MAR % | NAB standard | NAB low-FP | NAB low-FN | time s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in results.items():
        m = s["metrics"]
        cp = s["changepoint"]["scores"]
        lines.append(
            f"| {name} | {m['f1']:.3f} | {m['far_percent']:.2f} | {m['mar_percent']:.2f} | "
            f"{cp['standard']:.1f} | {cp['reward_low_FP']:.1f} | {cp['reward_low_FN']:.1f} | "
            f"{s['seconds']} |"
        )
    return "\n".join(lines)


def dump(results: dict[str, dict[str, Any]], path: str | None) -> None:
    if path:
        Path(path).write_text(json.dumps(results, indent=2))
