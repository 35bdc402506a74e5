"""The one way tests run the CLI in-process: click's CliRunner on ``merkle_backup.cli.main``,
exceptions not caught, so a bug (anything but a deliberate merkle_backup error) fails the test
with its traceback. tests/attacks/helpers.py adds the attack tests' output rules on top."""

from __future__ import annotations

from click.testing import CliRunner

from merkle_backup.cli import main


def run(*args: object) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``merkle-backup ARGS``."""
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr
