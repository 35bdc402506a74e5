"""README's commands run as written on a fresh machine (issue 15).

Every ```sh block of README.md is cut into commands (continued lines joined, here-documents
kept whole). The local ones run, in README's order, as one bash script with ``set -e`` in an
empty folder with a new, empty HOME, and ``merkle-backup`` on PATH running this tree's package:
each must exit 0. The ones that need a bucket or a cluster (``s3://``, ``--bsl``, ``kubectl``)
are not run; the install and test commands are checked against what ``.ci/run`` runs instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CI = ROOT / ".ci" / "run"
SH_BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.S | re.M)
REMOTE = ("s3://", "--bsl", "kubectl ")


def commands(block: str) -> list[str]:
    """The block's commands: a line ending in a backslash goes on, a here-document is one."""
    out: list[str] = []
    lines = block.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        heredoc = re.search(r"<<'?(\w+)'?", line)
        if heredoc:
            end = heredoc[1]
            body = []
            while i < len(lines) and lines[i] != end:
                body.append(lines[i])
                i += 1
            line = "\n".join([line, *body, end])
            i += 1
        out.append(line)
    return out


def readme_commands() -> list[str]:
    return [c for block in SH_BLOCK.findall(README.read_text(encoding="utf-8"))
            for c in commands(block)]


def is_install_or_test(part: str) -> bool:
    return part.strip().startswith(("pip install", "python3 setup.py build_ext", "python3 -m pytest"))


def local_script() -> tuple[list[str], list[str]]:
    """(the commands run, the commands not run)."""
    run, not_run = [], []
    for command in readme_commands():
        if any(r in command for r in REMOTE):
            not_run.append(command)
            continue
        parts = [p for p in command.split(" && ") if not is_install_or_test(p)]
        if parts:
            run.append(" && ".join(p.strip() for p in parts))
    return run, not_run


def test_readme_test_command_is_the_one_ci_runs() -> None:
    top = readme_commands()[:2]
    ci = CI.read_text(encoding="utf-8")
    assert top[0].startswith("pip install . && merkle-backup demo")
    assert top[1].split("#")[0].split() == [
        "pip", "install", "'.[test,bench]'", "&&", "python3", "setup.py", "build_ext", "--inplace",
        "&&", "python3", "-m", "pytest"]
    # .ci/run: the same three steps, in that order (it may add flags that only quieten them).
    steps = [re.search(r'^python3 -m pip install --quiet --disable-pip-version-check ".\[test,bench',
                       ci, flags=re.M),
             re.search(r"^python3 setup.py (-q )?build_ext --inplace$", ci, flags=re.M),
             re.search(r"^python3 -m pytest$", ci, flags=re.M)]
    assert all(steps), steps
    assert [s.start() for s in steps] == sorted(s.start() for s in steps)


def test_readme_says_what_is_needed_and_what_is_skipped_without_it() -> None:
    text = " ".join(README.read_text(encoding="utf-8").split())
    assert "Requirements: Python 3.10 or later" in text
    assert "`apt-get install golang-go golang-golang-x-mod-dev`" in text
    assert "pytest skips those tests and names each one, with its reason" in text
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^addopts = "[^"]*-rs', pyproject, flags=re.M)  # skips named by pytest


def test_every_local_readme_command_runs_as_written(tmp_path: Path) -> None:
    run, not_run = local_script()
    assert len(run) >= 15 and sum(c.startswith("merkle-backup ") for c in run) >= 12
    assert all(any(r in c for r in REMOTE) for c in not_run) and len(not_run) == 6
    bin_dir, home, work = tmp_path / "bin", tmp_path / "home", tmp_path / "work"
    for d in (bin_dir, work):
        d.mkdir()
    wrapper = bin_dir / "merkle-backup"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m merkle_backup "$@"\n')
    wrapper.chmod(0o755)
    script = "\n".join([
        "set -euo pipefail",
        "trap 'echo \"README command failed: $BASH_COMMAND\" >&2' ERR",
        *run,
    ])
    env = {"HOME": str(home), "PATH": f"{bin_dir}:/usr/bin:/bin", "LANG": "C.UTF-8",
           "TMPDIR": os.environ.get("TMPDIR", "/tmp")}
    done = subprocess.run(["bash", "-c", script], check=False, cwd=work, env=env,
                          capture_output=True,
                          text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not home.joinpath(".config", "merkle-backup", "signer.key").stat().st_mode & 0o077
    assert "demo finished: tampering was caught and named" in done.stdout
    assert "VERIFIED: proof for backup demo-small" in done.stdout
    assert (work / "demo" / "payments.proof").exists()


OUTSIDE = re.compile(r"\.\./(shared|external|VELERO|STYLE|tools/make_backup)|steering repo|"
                     r"research/(tools|merkle)")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def repository_docs() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True,
                            check=False)
    if listed.returncode == 0 and listed.stdout.strip():
        return [ROOT / p for p in listed.stdout.split()]
    return [p for p in ROOT.rglob("*.md") if ".git" not in p.parts]


def test_repository_docs_refer_only_to_files_in_the_repository() -> None:
    docs = repository_docs()
    assert ROOT / "tests" / "fixtures" / "README.md" in docs
    for doc in docs:
        text = doc.read_text(encoding="utf-8")
        found = OUTSIDE.search(text)
        assert found is None, f"{doc.relative_to(ROOT)}: {found[0]!r}"
        prose = re.sub(r"`[^`\n]*`", "", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M))
        for target in LINK.findall(prose):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            resolved = (doc.parent / target).resolve()
            assert resolved.is_relative_to(ROOT), f"{doc.relative_to(ROOT)}: {target}"
            assert resolved.exists(), f"{doc.relative_to(ROOT)}: {target} does not exist"
