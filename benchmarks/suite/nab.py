"""NAB realKnownCause (univariate): fit on the first 400 rows of each file, score the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sensorguard.evaluation.changepoint import RawScore, changepoint_score
from sensorguard.evaluation.readers import iter_nab
from sensorguard.evaluation.suite import (
    Case,
    Scored,
    point_scores,
    pooled,
    segments,
    split_first_rows,
)

from .common import f1d, f3, table

NAME = "nab"
MACHINE = "realKnownCause/machine_temperature_system_failure.csv"
TRAIN_ROWS = 400
PROTOCOL = (
    "each file: fit on its first 400 rows (the team's contract), score the rest; rows inside "
    "NAB's labelled windows are positives; changepoint score = the clean-room NAB score "
    "(standard profile) with NAB's window length per file (10 % of the file's span shared "
    "among its windows)"
)


def load(root: Path, quick: bool) -> list[Case]:
    out = []
    for s in iter_nab(root, ["realKnownCause"]):
        if quick and s.name != MACHINE:
            continue
        train, test, y = split_first_rows(s.X, s.y, TRAIN_ROWS)
        times = s.times.iloc[TRAIN_ROWS:].reset_index(drop=True)
        span = (s.times.iloc[-1] - s.times.iloc[0]).total_seconds()
        n_win = max(1, len(segments(s.y)))
        out.append(
            Case(
                dataset=NAME,
                protocol="first-400",
                name=s.name,
                train=train,
                test=test.reset_index(drop=True),
                y=y,
                group="machine" if s.name == MACHINE else "other",
                meta={"times": times, "window_seconds": 0.10 * span / n_win},
            )
        )
    return out


def wants_contributions(case: Case) -> bool:
    return False


def per_case(case: Case, scored: Scored) -> dict[str, Any]:
    cp = changepoint_score(
        case.meta["times"],
        scored.flags,
        y_true=case.y,
        window_seconds=case.meta["window_seconds"],
    )
    return {"file": case.name, "group": case.group, **point_scores(case.y, scored.flags), "cp": cp}


def _cp(rows: list[dict[str, Any]]) -> float:
    total: RawScore | None = None
    for r in rows:
        total = r["cp"] if total is None else total + r["cp"]
    assert total is not None
    return float(total.normalised()["standard"])


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    machine = [r for r in rows if r["group"] == "machine"]
    out: dict[str, Any] = {}
    if machine:
        out["machine_temperature"] = {**pooled(machine), "nab_standard": _cp(machine)}
    if len(rows) > len(machine):
        out["realKnownCause"] = {**pooled(rows), "nab_standard": _cp(rows), "files": len(rows)}
    for r in rows:
        r.pop("cp", None)  # not JSON; its figure is in the summary
    return out


def tables(res: dict[str, dict[str, Any]]) -> str:
    head = ["detector", "F1", "FAR %", "MAR %", "NAB standard"]
    out = f"**NAB** — {PROTOCOL}.\n"
    for part, title in (
        ("machine_temperature", "machine temperature"),
        ("realKnownCause", "all realKnownCause files, pooled"),
    ):
        rows = [
            [
                n,
                f3(s[part]["f1"]),
                f1d(s[part]["far_percent"]),
                f1d(s[part]["mar_percent"]),
                f1d(s[part]["nab_standard"]),
            ]
            for n, s in res.items()
            if part in s
        ]
        if rows:
            out += f"\n{title}:\n\n" + table(head, rows) + "\n"
    return out
