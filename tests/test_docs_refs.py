"""docs/threat-model.md names, for each row, the tests that show it: every test it names exists
(a renamed or deleted test would leave a row claiming what nothing checks)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_test_the_threat_model_names_exists() -> None:
    named = set(re.findall(r"::(test_\w+)", (ROOT / "docs" / "threat-model.md").read_text()))
    defined = {name for path in (ROOT / "tests").rglob("test_*.py")
               for name in re.findall(r"^\s*(?:async )?def (test_\w+)", path.read_text(),
                                      re.MULTILINE)}
    assert len(named) > 200
    assert sorted(named - defined) == []
