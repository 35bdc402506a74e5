"""The CLI as a user runs it, with the rules every attack test holds it to.

Every run goes through click's CliRunner on ``merkle_backup.cli.main`` with
``catch_exceptions=False``: an exception that is not a deliberate merkle_backup error escapes
and fails the test with its traceback. On top of that, ``run`` checks that nothing printed a
traceback and that a failing command says why in at most one line on stderr.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from merkle_backup.display import shown as escaped
from tests.cli import run as invoke

EXIT_OK, EXIT_NOT_AUTHENTIC, EXIT_USAGE, EXIT_CANNOT_CHECK = 0, 1, 2, 3
DEMO_UID = "2e242fc8-0e85-4f16-bc6e-9d5f38be1ce3"  # demo-small's metadata.uid
NS_A = "monitoring-000"
NS_B = "payments-001"


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, Any]:
        return json.loads(self.out)  # type: ignore[no-any-return]


def run(*args: str | Path) -> Outcome:
    outcome = Outcome(*invoke(*args))
    assert "Traceback" not in outcome.out and "Traceback" not in outcome.err
    if outcome.code != EXIT_OK:
        lines = outcome.err.strip().splitlines()
        assert len(lines) <= 1, outcome.err
        assert all(line.startswith("merkle-backup: ") for line in lines), outcome.err
    return outcome


def tarball(folder: Path) -> Path:
    return folder / f"{folder.name}.tar.gz"


def seal_path(folder: Path) -> Path:
    return folder / f"{folder.name}-merkle.seal"


def seal(backup: Path, key: Path, *extra: str | Path) -> Outcome:
    outcome = run("seal", backup, "--key", key, *extra)
    assert outcome.code == EXIT_OK, outcome.err
    return outcome


def verify(backup: Path, pub: Path, *extra: str | Path) -> tuple[int, dict[str, Any]]:
    """verify --json: (exit code, the JSON object); errors print {"error": ...} too."""
    outcome = run("verify", backup, "--trust", pub, "--json", *extra)
    return outcome.code, outcome.json()


def failures(report: dict[str, Any]) -> set[tuple[str, str]]:
    return {(f["path"], f["problem"]) for f in report["failures"]}


def detail(report: dict[str, Any], path: str) -> str:
    return next(f["detail"] for f in report["failures"] if f["path"] == path)


def expect_not_authentic(
    backup: Path, pub: Path, *named: tuple[str, str], extra: tuple[str | Path, ...] = ()
) -> dict[str, Any]:
    """verify exits 1 and names every (path, problem) in ``named``, in --json and in the human
    report (which prints each failure as "<problem> <path>", the path escaped by display.shown)."""
    code, report = verify(backup, pub, *extra)
    assert code == EXIT_NOT_AUTHENTIC, report
    assert report["verified"] is False
    found = failures(report)
    for item in named:
        assert item in found, f"{item} not in {sorted(found)[:10]}"
    human = run("verify", backup, "--trust", pub, *extra)
    assert human.code == EXIT_NOT_AUTHENTIC
    assert human.out.startswith("NOT AUTHENTIC")
    shown = {(f["path"], f["problem"]) for f in report["failures"][:50]}  # the CLI shows 50
    for path, problem in named:
        if (path, problem) in shown:
            assert f"{problem:<10} {escaped(path)}" in human.out, human.out  # escaped for a terminal
    return report


def expect_refusal(code: int, *args: str | Path, says: tuple[str, ...] = ()) -> str:
    """The command exits ``code`` with one line on stderr holding every fragment of ``says``."""
    outcome = run(*args)
    assert outcome.code == code, (outcome.code, outcome.out, outcome.err)
    line = outcome.err.strip()
    assert line, "no message on stderr"
    for fragment in says:  # the line shows attacker text escaped (display.shown)
        assert escaped(fragment) in line, f"{escaped(fragment)!r} not in {line!r}"
    return line
