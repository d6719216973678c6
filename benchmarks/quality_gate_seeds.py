"""The demo's quality gate on the demo's data, for several seeds, detector by detector.

    .venv/bin/python benchmarks/quality_gate_seeds.py [DETECTOR | 'NAME[k=JSON,...]' ...] \\
        [--seeds 7-14] [--days 14] [--holdout 0.35]

Per seed: the pump history `./sg demo` simulates (``simulate_pump(days, seed)``), the same
time split (``split_readings``, 35 % held out), the detector fitted on the normal rows of
the training part and judged by the default gate (``pipelines.gate.decide``, no
production version) on the held-out part, without MLflow. This is the check behind "the
demo's gate rejects `pca-smoothed`" in docs/quality.md. The variants of
``quality_tried.py`` can be named too. Simulator figures: in-sample for the project's own
machine, never a real-data result. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality_tried
from quality_suite import split_variant

from sensorguard.config import get_settings
from sensorguard.data.readings import Readings
from sensorguard.data.simulator import simulate_pump
from sensorguard.evaluation.events import evaluate_detector
from sensorguard.pipelines.gate import decide
from sensorguard.pipelines.training import fit_detector, normal_rows, split_readings


def seeds(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("detectors", nargs="+", help="names or variants NAME[k=JSON,...]")
    parser.add_argument("--seeds", default="7-14", help="a seed or a range, e.g. 7-14")
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--holdout", type=float, default=0.35)
    args = parser.parse_args()
    quality_tried.register()
    settings = get_settings()
    runs = seeds(args.seeds)
    for spec in args.detectors:
        name, params = split_variant(spec)
        passed, cells = 0, []
        for seed in runs:
            history = simulate_pump(days=args.days, seed=seed, start="2026-01-01")
            train, held = split_readings(Readings.from_frame(history, source="sim"), args.holdout)
            assert held is not None
            detector = fit_detector(name, params, normal_rows(train))
            m = evaluate_detector(detector, held)
            decision = decide(m, None, settings, candidate_version=1, production_version=None)
            passed += decision.passed
            cells.append(f"{m['f1']:.3f}/{m['event_recall']:.2f}/{m['false_alarms_per_day']:.2f}")
        print(f"{spec}: passes {passed} of {len(runs)}  (F1/event recall/false alarms per day)")
        print("   " + "  ".join(f"{s}:{c}" for s, c in zip(runs, cells, strict=True)), flush=True)


if __name__ == "__main__":
    main()
