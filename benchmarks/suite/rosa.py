"""RoSA rotor rig: the README's protocols R1 (speed-matched healthy reference), R2 (first
400 rows of one healthy file) and the healthy leave-one-file-out false-alarm check."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sensorguard.evaluation.regime import ranges_from_training, regime_check, suppress_regime_alarms
from sensorguard.evaluation.suite import (
    Case,
    Scored,
    event_scores,
    merge_gaps,
    point_scores,
    pooled,
    pooled_events,
    spread_pick,
)

from .common import f1d, f3, table

NAME = "rosa"
FEATURES = [
    "Shaft Control Effort", "Actual Speed", "Orient. x", "Orient. y", "Orient. z",
    "AngVel x", "AngVel y", "AngVel z", "LinAcc. x", "LinAcc. y", "LinAcc. z",
    "Mag. x", "Mag. y", "Mag. z", "Quat. w", "Quat. x", "Quat. y", "Quat. z",
    "Temp", "Audio", "Strain Gage",
]  # fmt: skip
LABEL = "Binary Macro Health Mode"
POOL_ROWS = 20_000  # R1 training pool cap (whole healthy files, spread over the list)
LOO_POOL_ROWS = 4_000  # leave-one-out pool cap: 84 fits per detector on 2 shared cores
MERGE_ROWS = 32  # label gaps < ~0.5 s (65 Hz) merged for the event figures
R2_ROWS = 400
PROTOCOLS = {
    "R1": (
        "each fault file with a healthy run at the same desired speed (99 files): fit on "
        f"the Healthy-Mode files at that speed (whole files, spread over the list, capped at "
        f"{POOL_ROWS:,} rows), score every row against `Binary Macro Health Mode`"
    ),
    "R2": (
        "as R1, but fit on the first 400 rows (~6 s) of the first Healthy-Mode file at that speed"
    ),
    "LOO": (
        "leave-one-file-out over the Healthy-Mode files (84 with another file at the same "
        f"speed): fit on the others at that speed (whole files, capped at {LOO_POOL_ROWS:,} "
        "rows), score the held-out file; every alarm is false"
    ),
}


@cache
def _read(path: str) -> tuple[pd.DataFrame, np.ndarray, float]:
    frame = pd.read_csv(path)
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = frame.loc[:, ~frame.columns.duplicated()]
    X = frame[FEATURES].astype(np.float64).reset_index(drop=True)
    y = (frame[LABEL].astype(str).str.strip() == "A").to_numpy().astype(np.int8)
    dt = float(np.median(np.diff(frame["Time"].to_numpy(dtype=np.float64)))) / 1000.0
    return X, y, dt


def load(root: Path, quick: bool) -> list[Case]:
    index = pd.read_csv(root / "index.csv")
    healthy = index[index["mode"] == "healthy"]
    by_speed: dict[float, pd.DataFrame] = {
        float(v): g.sort_values("file", key=lambda s: s.str.extract(r"(\d+)")[0].astype(int))
        for v, g in healthy.groupby("desired_speed")
    }

    def path(row: Any) -> str:
        return str(root / row["folder"] / row["file"])

    def pool(rows: pd.DataFrame, budget: int) -> pd.DataFrame:
        items = [path(r) for _, r in rows.iterrows()]
        picked = spread_pick(items, rows["rows"].tolist(), budget)
        return pd.concat([_read(p)[0] for p in picked], ignore_index=True)

    cases: list[Case] = []
    faults = index[(index["mode"] != "healthy") & (index["healthy_ref_available"] == 1)]
    if quick:  # a few files per mode, every speed that has them
        faults = faults.groupby(["mode", "desired_speed"]).head(2)
    pools: dict[float, pd.DataFrame] = {}
    firsts: dict[float, pd.DataFrame] = {}
    for _, r in faults.iterrows():
        v = float(r["desired_speed"])
        if v not in pools:
            pools[v] = pool(by_speed[v], POOL_ROWS)
            firsts[v] = _read(path(by_speed[v].iloc[0]))[0].iloc[:R2_ROWS]
        X, y, dt = _read(path(r))
        meta = {"dt_s": dt, "speed": v}
        cases.append(Case(NAME, "R1", r["file"], pools[v], X, y, r["mode"], f"R1-{v}", meta))
        cases.append(Case(NAME, "R2", r["file"], firsts[v], X, y, r["mode"], f"R2-{v}", meta))
    for v, g in by_speed.items():
        if len(g) < 2:
            continue
        held = g.head(2) if quick else g
        for _, r in held.iterrows():
            others = g[g["file"] != r["file"]]
            X, y, dt = _read(path(r))
            cases.append(
                Case(
                    NAME, "LOO", r["file"], pool(others, LOO_POOL_ROWS), X, y, f"{v:g}",
                    None, {"dt_s": dt, "speed": v},
                )
            )  # fmt: skip
    return sorted(cases, key=lambda c: (c.protocol, c.train_key or "", c.name))


def wants_contributions(case: Case) -> bool:
    return False


def per_case(case: Case, scored: Scored) -> dict[str, Any]:
    out: dict[str, Any] = {
        "protocol": case.protocol,
        "file": case.name,
        "mode": case.group,
        "speed": case.meta["speed"],
        **point_scores(case.y, scored.flags),
    }
    if case.protocol != "LOO":
        ev = event_scores(merge_gaps(case.y, MERGE_ROWS), scored.flags)
        out["events"] = ev
        out["dt_s"] = case.meta["dt_s"]
    # what the product reports: the alarm a regime change carries is replaced by the
    # verdict (evaluation.regime.suppress_regime_alarms, as `sensorguard score` does)
    verdict = regime_check(case.test, ranges_from_training(case.train))
    out["regime_change"] = verdict.regime_change
    kept, removed = suppress_regime_alarms(scored.flags, verdict)
    out["after_verdict"] = {**point_scores(case.y, kept), "alarm_rows_removed": removed}
    return out


def _after_verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled point scores with the alarms regime changes carry replaced by the verdict."""
    return {
        **pooled([r["after_verdict"] for r in rows]),
        "files_with_verdict": sum(bool(r["regime_change"]) for r in rows),
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for proto in ("R1", "R2"):
        pr = [r for r in rows if r["protocol"] == proto]
        if not pr:
            continue
        modes: dict[str, Any] = {}
        for mode in ("N", "V", "D"):
            mr = [r for r in pr if r["mode"] == mode]
            if not mr:
                continue
            ev = pooled_events([r["events"] for r in mr])
            dt = float(np.median([r["dt_s"] for r in mr]))
            delay = ev["mean_delay_rows"] * dt if ev["mean_delay_rows"] is not None else None
            modes[mode] = {
                **pooled(mr),
                "files": len(mr),
                "event_f1": ev["f1"],
                "event_recall": ev["recall"],
                "event_precision": ev["precision"],
                "mean_delay_s": delay,
            }
        out[proto] = {"modes": modes, "all": pooled(pr), "after_verdict": _after_verdict(pr)}
    loo = [r for r in rows if r["protocol"] == "LOO"]
    if loo:
        far = np.array([r["far_percent"] for r in loo])
        per_speed = {}
        for sp in sorted({r["speed"] for r in loo}):
            s = [r for r in loo if r["speed"] == sp]
            per_speed[f"{sp:g}"] = {"files": len(s), "far_percent": pooled(s)["far_percent"]}
        out["LOO"] = {
            "files": len(loo),
            "far_percent_pooled": pooled(loo)["far_percent"],
            "far_percent_mean": float(far.mean()),
            "far_percent_median": float(np.median(far)),
            "files_with_alarms": int((far > 0).sum()),
            "per_speed": per_speed,
            "after_verdict": _after_verdict(loo),
        }
    return out


def tables(res: dict[str, dict[str, Any]]) -> str:
    out = (
        "**RoSA rotor rig** — point F1 / FAR % / MAR % per fault mode; event F1 with label "
        "gaps < 0.5 s merged; delay = mean seconds from an event's start to its first alarm.\n"
    )
    for proto in ("R1", "R2"):
        if not any(proto in s for s in res.values()):
            continue
        out += f"\n{proto}: {PROTOCOLS[proto]}.\n\n"
        head = ["detector"]
        modes = [
            m
            for m in ("N", "V", "D")
            if any(m in s.get(proto, {}).get("modes", {}) for s in res.values())
        ]
        for m in modes:
            head += [f"{m} F1 / FAR / MAR", f"{m} event F1", f"{m} delay s"]
        rows = []
        for n, s in res.items():
            cells = [n]
            for m in modes:
                x = s[proto]["modes"].get(m)
                if x is None:
                    cells += ["—", "—", "—"]
                    continue
                cells += [
                    f"{x['f1']:.3f} / {x['far_percent']:.1f} / {x['mar_percent']:.1f}",
                    f3(x["event_f1"]),
                    f1d(x["mean_delay_s"]),
                ]
            rows.append(cells)
        files = {m: next(iter(res.values()))[proto]["modes"][m]["files"] for m in modes}
        out += (
            table(head, rows)
            + "\n\nfiles per mode: "
            + ", ".join(f"{m} {k}" for m, k in files.items())
            + "\n"
            + _verdict_line(res, proto)
        )
    if any("LOO" in s for s in res.values()):
        out += f"\nHealthy leave-one-out: {PROTOCOLS['LOO']}.\n\n"
        speeds = sorted(next(iter(res.values()))["LOO"]["per_speed"], key=float)
        head = [
            "detector",
            "FAR % pooled",
            "mean",
            "median",
            "files with alarms",
            *[f"{v} rpm" for v in speeds],
        ]
        rows = []
        for n, s in res.items():
            x = s["LOO"]
            rows.append(
                [
                    n,
                    f1d(x["far_percent_pooled"]),
                    f1d(x["far_percent_mean"]),
                    f1d(x["far_percent_median"]),
                    f"{x['files_with_alarms']} / {x['files']}",
                    *[f1d(x["per_speed"][v]["far_percent"]) for v in speeds],
                ]
            )
        out += table(head, rows) + "\n" + _verdict_line(res, "LOO")
    return out


def _verdict_line(res: dict[str, dict[str, Any]], proto: str) -> str:
    """The same files as the product reports them: the alarm a regime-change verdict
    carries replaced by the verdict (the tables above count it as an alarm)."""
    first = next(iter(res.values()))[proto].get("after_verdict")
    if first is None:  # a JSON file of an earlier run
        return ""
    cells = []
    for n, s in res.items():
        x = s[proto]["after_verdict"]
        cells.append(
            f"{n} {x['far_percent']:.1f} %"
            if proto == "LOO"
            else f"{n} {x['f1']:.3f} / {x['far_percent']:.1f} / {x['mar_percent']:.1f}"
        )
    what = "FAR" if proto == "LOO" else "F1 / FAR % / MAR %, all modes pooled"
    return (
        f"\nAs the product reports it ({first['files_with_verdict']} files get the "
        f"regime-change verdict; the alarm it carries is replaced by the verdict), {what}: "
        + ", ".join(cells)
        + "\n"
    )
