"""docs/threat-model.md T73: every parser of user input is the project's strict one, with
bounded depth and size and linear time: deeply nested JSON in --restore, --bsl, --state and
--log-state, deep YAML in --bsl and --restore, one long line without a colon in a YAML --bsl
each get one line and an exit code, never a RecursionError traceback or minutes of CPU.

The runs are processes with a timeout: the long line (10^6 spaces) took the old key pattern
quadratic time, far past the timeout; no time is measured here."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from merkle_backup.formats.strict import MAX_JSON_DEPTH, json_depth, loads_json
from merkle_backup.storage.yaml_subset import YamlSubsetError, parse_simple_yaml
from tests.conftest import FIXTURES
from tests.storage.server import clone_backup

DEEP_JSON = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a":' * 5000 + "1" + "}" * 5000
# PyYAML 6.0.4's scanner stops deep flow collections itself (6.0.3's composer overflowed the C
# stack): either refusal is one line and exit 2.
FLOW_LIMIT = "not valid YAML or JSON (while increasing flow level)"
DEEP_YAML = "a:\n" + "".join(" " * i + "b:\n" for i in range(1, 400))


def cli(*args: object) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-m", "merkle_backup", *map(str, args)],
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def one_line(result: tuple[int, str, str], code: int, *said: str) -> None:
    got, out, err = result
    assert got == code and "Traceback" not in err, (got, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and any(s in lines[0] for s in said), err


@pytest.fixture
def backup(tmp_path, keypair):
    folder = clone_backup(FIXTURES / "demo-small", tmp_path / "bucket" / "backups", "nightly")
    assert cli("seal", folder, "--key", keypair[0])[0] == 0
    return folder


@pytest.mark.parametrize("text", [DEEP_JSON, DEEP_OBJECT], ids=["deep-array", "deep-object"])
def test_t73_deep_json_everywhere(text, backup, keypair, tmp_path):
    named = tmp_path / "deep.json"
    named.write_text(text)
    # (a manifest not starting with "{" is read as YAML: PyYAML's own nesting limit)
    one_line(cli("verify", backup, "--trust", keypair[1], "--restore", named), 2, "nested",
             FLOW_LIMIT)
    one_line(cli("audit", "--bsl", named, "--trust", keypair[1]), 3, "nested",
             "not valid JSON")
    one_line(cli("audit", backup.parent.parent, "--trust", keypair[1], "--state", named),
             3, "state file")
    one_line(cli("audit", backup.parent.parent, "--trust", keypair[1], "--log",
                 tmp_path / "log", "--log-state", named), 3, "log state")


def test_t73_deep_yaml(backup, keypair, tmp_path):
    named = tmp_path / "deep.yaml"
    named.write_text(DEEP_YAML)
    one_line(cli("audit", "--bsl", named, "--trust", keypair[1]), 3, "nested more than")
    one_line(cli("verify", backup, "--trust", keypair[1], "--restore", named), 2, "nested more than")


@pytest.mark.parametrize("text", ["- " * 100_000 + "x\n", "a: " + "[" * 100_000 + "]" * 100_000,
                                  "a: " + "{b: " * 50_000 + "1" + "}" * 50_000],
                         ids=["block-sequences", "flow-sequences", "flow-maps"])
def test_t73_deep_yaml_is_refused_before_it_is_composed(text, backup, keypair, tmp_path):
    """PyYAML composes recursively: over libyaml, 10^5 levels were a segmentation fault (exit
    -11, nothing printed). The depth is counted on the parser's events first."""
    named = tmp_path / "deep.yaml"
    named.write_text(text)
    one_line(cli("verify", backup, "--trust", keypair[1], "--restore", named), 2,
             f"{named}: nested more than 64 levels deep", f"{named}: {FLOW_LIMIT}")


def test_t73_a_long_line_without_a_colon_is_read_in_linear_time(keypair, tmp_path):
    named = tmp_path / "bsl.yaml"
    named.write_text("kind: BackupStorageLocation\nspec:\n  a" + " " * 1_000_000 + "b\n")
    one_line(cli("audit", "--bsl", named, "--trust", keypair[1]), 3, "bsl.yaml")


def test_depth_is_counted_outside_strings_and_bounded():
    assert json_depth('{"a": [1, {"b": "[[[[{{{{"}]}') == 3
    assert loads_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None
    with pytest.raises(ValueError, match="nested more than"):
        loads_json("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    with pytest.raises(YamlSubsetError, match="nested more than"):
        parse_simple_yaml(DEEP_YAML)
    assert parse_simple_yaml("a:\n  b: 'x: y'\n  \"c d\": e # f\n") == [
        {"a": {"b": "x: y", "c d": "e"}}]
    assert json.loads(json.dumps({"k": "v"})) == loads_json('{"k": "v"}')
