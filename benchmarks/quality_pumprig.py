"""Detection quality on the synthetic pump test rig (the benchmark contract's format).

    .venv/bin/python benchmarks/quality_pumprig.py [DETECTOR ...] [--files 60] [--seed 0]
        [--onset physical|linear] [--keep FOLDER]

``--onset linear`` makes the gradual anomalies (leak, bearing heat) ramp from zero over
the whole segment, as the generator did before (a harder variant; see
``benchmarks/quality_rig_robustness.py`` for seeds and other variants).
``--keep FOLDER`` also leaves the generated files there, for
``sensorguard benchmark FOLDER --sep ';' ...``.

Generates the files with ``sensorguard.evaluation.synthetic.write_pump_rig`` (8 sensors
at 1 Hz, ~1,100 rows, one long anomaly per file, drifting temperatures, wandering
baselines), then runs the benchmark protocol (fit on the first 400 rows of each file,
predict the rest) for every detector; prints a markdown table and a per-kind breakdown.
"""

from __future__ import annotations

import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_common import dump, parse_args, point_table, run_all

from sensorguard.evaluation.metrics import Confusion
from sensorguard.evaluation.readers import iter_csv_folder
from sensorguard.evaluation.synthetic import write_pump_rig


def main() -> None:
    args = parse_args(__doc__, files=60, seed=0, keep="", onset="physical")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        write_pump_rig(folder, n_files=args.files, seed=args.seed, onset=args.onset)
        results = run_all(
            lambda: iter_csv_folder(
                folder,
                sep=";",
                time_column="datetime",
                label_column="anomaly",
                ignore_columns=["changepoint"],
            ),
            args.detectors,
            params=args.params,
        )
    dump(results, args.json)
    print(
        f"synthetic pump rig: {args.files} files, seed {args.seed}, onset {args.onset}, "
        "fit on first 400 rows\n"
    )
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
