"""Formatting helpers shared by the data-set modules."""

from __future__ import annotations

from typing import Any


def f3(v: Any) -> str:
    return "—" if v is None else f"{v:.3f}"


def f1d(v: Any) -> str:
    return "—" if v is None else f"{v:.1f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)
