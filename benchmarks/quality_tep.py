"""Detection quality on the Tennessee Eastman process (``../shared/data/tep``).

    .venv/bin/python benchmarks/quality_tep.py [DETECTOR ...]

Classic protocol: fit on the normal run ``d00.dat`` (500 samples, 52 variables), then
score every test run ``dNN_te.dat``; the fault starts at sample 160. Reports per fault
the detection rate (share of faulty samples ≥ 160 alarmed) and the false-alarm rate
(share of samples < 160 alarmed). Skips with a message when the data is absent.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_common import dump, parse_args, run_all, shared_or_exit

from sensorguard.evaluation.readers import iter_tep


def main() -> None:
    args = parse_args(__doc__)
    folder = shared_or_exit("tep")
    series = list(iter_tep(folder))
    results = run_all(lambda: series, args.detectors, params=args.params, window_seconds=3 * 60 * 3)
    dump(results, args.json)
    names = list(results)
    print("Tennessee Eastman: fit on d00.dat, detection rate % / false-alarm rate % per fault\n")
    print("| fault | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    files = [f["file"] for f in next(iter(results.values()))["files"]]
    for i, fname in enumerate(files):
        cells = []
        for n in names:
            f = results[n]["files"][i]
            cells.append(f"{100 - f['mar_percent']:.1f} / {f['far_percent']:.1f}")
        print(f"| {int(fname[1:3])} | " + " | ".join(cells) + " |")
    cells = []
    for n in names:
        m = results[n]["metrics"]
        cells.append(f"**{100 - m['mar_percent']:.1f} / {m['far_percent']:.1f}**")
    print("| all | " + " | ".join(cells) + " |")
    hard = {3, 9, 15}
    cells = []
    for n in names:
        fs = [f for f in results[n]["files"] if int(f["file"][1:3]) not in hard]
        tp = sum(f["tp"] for f in fs)
        fn = sum(f["fn"] for f in fs)
        cells.append(f"{100 * tp / (tp + fn):.1f}")
    print("| all but 3, 9, 15 (detection %) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
