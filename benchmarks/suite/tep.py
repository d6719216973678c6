"""Tennessee Eastman (Braatz set): fit on d00.dat, score every dNN_te.dat (fault from row 160)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sensorguard.evaluation.explain import top_k_hit
from sensorguard.evaluation.readers import TEP_FAULT_START, iter_tep, read_tep_training
from sensorguard.evaluation.suite import Case, Scored, point_scores, pooled

from .common import f1d, f3, table

NAME = "tep"
HARD = {3, 9, 15}
# Variables each disturbance acts on directly, or the manipulated variable of the loop
# that compensates it, read from the process description (Downs & Vogel, 1993): our
# reading of the process, not a labelled ground truth.
ROOT_CAUSE: dict[int, list[str]] = {
    4: ["xmv_10", "xmeas_9", "xmeas_21"],  # reactor cooling water inlet temperature step
    5: ["xmv_11", "xmeas_22"],  # condenser cooling water inlet temperature step
    6: ["xmeas_1", "xmv_3"],  # A feed loss (stream 1)
    7: ["xmeas_4", "xmv_4"],  # C header pressure loss (stream 4)
    11: ["xmv_10", "xmeas_9", "xmeas_21"],  # reactor cooling water inlet temp. random
    14: ["xmv_10", "xmeas_9", "xmeas_21"],  # reactor cooling water valve sticking
}
PROTOCOL = (
    "fit on `d00.dat` (500 normal samples, 52 variables), score each `dNN_te.dat` "
    "(960 samples, fault from sample 160); detection % = alarmed share of samples ≥ 160, "
    "FAR % = alarmed share of samples < 160, pooled over the 21 faults"
)


def load(root: Path, quick: bool) -> list[Case]:
    train = read_tep_training(root)
    faults = [1, 2, 4, 5, 6, 7, 11, 14] if quick else None
    return [
        Case(
            dataset=NAME,
            protocol="standard",
            name=s.name,
            train=train,
            test=s.X,
            y=s.y,
            group=str(int(s.name[1:3])),
            train_key="d00",
        )
        for s in iter_tep(root, faults)
    ]


def wants_contributions(case: Case) -> bool:
    return int(case.group) in ROOT_CAUSE


def per_case(case: Case, scored: Scored) -> dict[str, Any]:
    fault = int(case.group)
    out: dict[str, Any] = {"fault": fault, **point_scores(case.y, scored.flags)}
    if scored.ranking is not None and fault in ROOT_CAUSE:
        targets = [scored.sensors.index(v) for v in ROOT_CAUSE[fault]]
        faulty = np.arange(len(case.y)) >= TEP_FAULT_START
        alarmed = faulty & scored.flags.astype(bool)
        out["top3_hit_alarmed"] = top_k_hit(scored.ranking, targets, 3, alarmed)
        out["top3_hit_faulty"] = top_k_hit(scored.ranking, targets, 3, faulty)
    return out


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    easy = [r for r in rows if r["fault"] not in HARD]
    p = pooled(rows)
    pe = pooled(easy)
    expl = [r for r in rows if r.get("top3_hit_alarmed") is not None]
    return {
        "detection_percent": 100 - p["mar_percent"],
        "far_percent": p["far_percent"],
        "f1": p["f1"],
        "detection_percent_without_3_9_15": 100 - pe["mar_percent"],
        "per_fault": {
            r["fault"]: {
                "detection_percent": 100 - r["mar_percent"],
                "far_percent": r["far_percent"],
            }
            for r in rows
        },
        "explanation": {
            r["fault"]: {"top3_alarmed": r["top3_hit_alarmed"], "top3_faulty": r["top3_hit_faulty"]}
            for r in expl
        },
        "explanation_mean_top3_alarmed": (
            float(np.mean([r["top3_hit_alarmed"] for r in expl])) if expl else None
        ),
    }


def tables(res: dict[str, dict[str, Any]]) -> str:
    names = list(res)
    head = ["detector", "detection %", "FAR %", "F1", "detection % w/o 3, 9, 15"]
    rows = [
        [
            n,
            f1d(s["detection_percent"]),
            f1d(s["far_percent"]),
            f3(s["f1"]),
            f1d(s["detection_percent_without_3_9_15"]),
        ]
        for n, s in res.items()
    ]
    out = f"**Tennessee Eastman** — {PROTOCOL}.\n\n" + table(head, rows)
    faults = sorted(next(iter(res.values()))["per_fault"], key=int)  # str keys after JSON
    frows = []
    for f in faults:
        cells = [str(f)]
        for n in names:
            pf = res[n]["per_fault"][f]
            cells.append(f"{pf['detection_percent']:.1f} / {pf['far_percent']:.1f}")
        frows.append(cells)
    out += "\n\nPer fault, detection % / FAR %:\n\n" + table(["fault", *names], frows)
    ex = sorted(next(iter(res.values()))["explanation"], key=int)
    if ex:
        erows = []
        for f in ex:
            cells = [f"{f} ({', '.join(ROOT_CAUSE[int(f)])})"]
            for n in names:
                e = res[n]["explanation"].get(f, {})
                cells.append(f"{f3(e.get('top3_alarmed'))} / {f3(e.get('top3_faulty'))}")
            erows.append(cells)
        out += (
            "\n\nExplanations: share of alarmed faulty samples / of all faulty samples whose "
            "top 3 sensors hold a root-cause variable (variables the disturbance acts on, "
            "read from the process description — not a labelled truth):\n\n"
            + table(["fault (root-cause variables)", *names], erows)
        )
    return out
