"""The house rule for module size (docs/architecture.md): a module of the library over
about 450 lines says at its top why it is one module ("... on purpose: ...")."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "sensorguard"
LIMIT = 450


def test_every_long_module_gives_its_reason_at_the_top() -> None:
    unexplained = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        n = text.count("\n")
        if n <= LIMIT:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if "on purpose" not in doc:
            unexplained.append(f"{path.relative_to(SRC)} ({n} lines)")
    assert not unexplained, "modules over 450 lines without a reason at the top: " + ", ".join(
        unexplained
    )
