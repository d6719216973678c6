"""The CLI's contract for bad input, checked the same way everywhere: a non-zero exit,
a message naming the problem, no traceback."""

from __future__ import annotations

from typing import Any


def assert_fails_cleanly(res: Any, *needles: str) -> str:
    """``res``: a ``CliRunner.invoke`` result. Returns its output."""
    out: str = res.output
    assert res.exit_code != 0, out
    assert "Traceback" not in out, out
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    for needle in needles:
        assert needle in out, out
    return out
