"""Every command's help as a new user meets it (issue 15): it fits 80 columns, ends with the
exit-code table of ``errors.EXIT_MEANINGS`` (and README's table is that table), says the right
thing of --bsl for what the command takes, and a habitual wrong key option gets the right one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from merkle_backup.cli import main
from merkle_backup.errors import EXIT_MEANINGS, ExitCode

COMMANDS = sorted(main.commands)
README = Path(__file__).resolve().parent.parent / "README.md"


def help_of(*command: str) -> str:
    # A wide terminal: click caps its help at 80 columns, but text it may not rewrap could overflow.
    result = CliRunner(env={"COLUMNS": "200"}).invoke(main, [*command, "--help"],
                                                      catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def exit_codes_section(text: str) -> dict[int, str]:
    section = text.split("\nExit codes:\n", 1)[1]
    table: dict[int, str] = {}
    for line in section.splitlines():
        m = re.match(r"\s+(\d+)\s+(.*)", line)
        if m:
            table[int(m[1])] = m[2]
        elif line.strip():
            table[max(table)] += " " + line.strip()
    return table


def test_every_command_is_covered() -> None:
    assert len(COMMANDS) >= 13 and "verify" in COMMANDS and "demo" in COMMANDS


@pytest.mark.parametrize("command", [(), *((c,) for c in COMMANDS)],
                         ids=lambda c: " ".join(c) or "main")
def test_help_fits_80_columns_and_ends_with_the_exit_codes(command: tuple[str, ...]) -> None:
    text = help_of(*command)
    too_wide = [line for line in text.splitlines() if len(line) > 80]
    assert not too_wide, too_wide
    assert exit_codes_section(text) == {int(c): m for c, m in EXIT_MEANINGS.items()}


def test_exit_meanings_cover_every_code() -> None:
    assert set(EXIT_MEANINGS) == set(ExitCode)


def test_readme_exit_code_table_is_the_one_in_errors() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Exit codes", 1)[1]
    rows = dict(re.findall(r"^\| (\d+) \| (.*) \|$", section, flags=re.M))
    assert {int(c): m.replace("`", "") for c, m in rows.items()} == {
        int(c): m for c, m in EXIT_MEANINGS.items()}


@pytest.mark.parametrize("command", ["verify", "verify-proof", "prove", "verify-attestation"])
def test_key_on_a_command_that_takes_trust_says_did_you_mean_trust(command: str) -> None:
    result = CliRunner().invoke(main, [command, "x", "--key", "signer.key.pub"])
    assert result.exit_code == ExitCode.USAGE
    assert "Did you mean --trust?" in result.stderr
    assert "--sse-c-key" not in result.stderr


def test_trust_on_seal_says_did_you_mean_key() -> None:
    result = CliRunner().invoke(main, ["seal", "x", "--trust", "signer.key"])
    assert result.exit_code == ExitCode.USAGE
    assert "Did you mean --key?" in result.stderr


def test_an_unknown_option_still_gets_clicks_own_answer() -> None:
    result = CliRunner().invoke(main, ["verify", "x", "--jsn"])
    assert result.exit_code == ExitCode.USAGE
    assert "No such option" in result.stderr and "--json" in result.stderr


def bsl_help(command: str) -> str:
    text = help_of(command)
    block = text.split("--bsl PATH", 1)[1].split("\n  --", 1)[0]
    return " ".join(block.split())


@pytest.mark.parametrize("command, says, never", [
    ("seal", "BACKUP may then be a bare NAME", "LOCATION"),
    ("verify", "BACKUP may then be a bare NAME", "LOCATION"),
    ("seal-all", "LOCATION may then be left out", "BACKUP"),
    ("audit", "LOCATION may then be left out", "BACKUP"),
    ("audit-merge", "to reach URL", "BACKUP"),
    ("forget", "to reach the --log bucket", "BACKUP"),
    ("witness", "to reach the --log bucket", "BACKUP"),
])
def test_bsl_help_speaks_of_what_the_command_takes(command: str, says: str, never: str) -> None:
    text = bsl_help(command)
    assert says in text and never not in text


@pytest.mark.parametrize("argv", [
    ["verify", "x", "--jsn"],                        # an unknown option
    ["seal-all", ".", "--key", "k", "--jobs", "abc"],  # a malformed number
    ["seal-all", ".", "--key", "k", "--jobs", "\x1b[31m"],  # and one that paints a terminal
    ["verify"],                                      # a missing argument
    ["verify", "x", "--trust"],                      # an option without its value
    ["nope"],                                        # an unknown command
    ["prove", "x", "--namespace", "a", "--resource", "b"],  # checked in the command itself
])
def test_a_usage_error_is_one_escaped_line_and_exit_2(argv: list[str]) -> None:
    """Like every other error: one line, exit 2, nothing a terminal would act on; click's own
    form was three lines (Usage:, Try ..., Error: ...)."""
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == ExitCode.USAGE, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("merkle-backup: error: "), result.stderr
    assert "\x1b" not in result.stderr and result.stdout == ""


def test_bare_command_still_shows_the_help() -> None:
    """A bare `merkle-backup` is a usage error whose message is the help: shown whole."""
    result = CliRunner().invoke(main, [], prog_name="merkle-backup")
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.startswith("Usage: merkle-backup [OPTIONS] COMMAND") and "\nCommands:\n" in result.stderr
