"""Detection quality on the synthetic pump test rig (benchmark contract format).

    .venv/bin/python benchmarks/quality_pumprig.py [DETECTOR ...] [--files N] [--seed S]

Generates N files (default 60, seed 0) with ``sensorguard.evaluation.synthetic``, then
runs the benchmark protocol (fit on the first 400 rows of each file, predict the rest)
for every detector and prints a markdown table plus a per-kind breakdown.
"""

from __future__ import annotations

import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_common import detectors_from_argv, point_table, run_all  # noqa: E402

from sensorguard.evaluation.metrics import Confusion  # noqa: E402
from sensorguard.evaluation.readers import iter_csv_folder  # noqa: E402
from sensorguard.evaluation.synthetic import write_pump_rig  # noqa: E402


def _opt(name: str, default: int) -> int:
    if name in sys.argv:
        return int(sys.argv[sys.argv.index(name) + 1])
    return default


def main() -> None:
    n_files, seed = _opt("--files", 60), _opt("--seed", 0)
    argv = [a for i, a in enumerate(sys.argv) if not (i and sys.argv[i - 1] in ("--files", "--seed"))]
    sys.argv = argv
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_pump_rig(folder, n_files=n_files, seed=seed)
        results = run_all(
            lambda: iter_csv_folder(
                folder,
                sep=";",
                time_column="datetime",
                label_column="anomaly",
                ignore_columns=["changepoint"],
            ),
            detectors_from_argv(),
        )
    print(f"synthetic pump rig: {n_files} files, seed {seed}, fit on first 400 rows\n")
    print(point_table(results))
    print("\nF1 / FAR % per anomaly kind:\n")
    kinds = sorted({f["file"].split("/")[0] for s in results.values() for f in s["files"]})
    print("| detector | " + " | ".join(kinds) + " |")
    print("|---|" + "---:|" * len(kinds))
    for name, s in results.items():
        per: dict[str, Confusion] = defaultdict(lambda: Confusion(0, 0, 0, 0))
        for f in s["files"]:
            k = f["file"].split("/")[0]
            per[k] = per[k] + Confusion(f["tp"], f["fp"], f["fn"], f["tn"])
        cells = [f"{per[k].f1:.2f} / {100 * per[k].far:.1f}" for k in kinds]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
