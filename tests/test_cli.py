"""The CLI contract the README documents, driven on the Go-written fixtures."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli import run
from tests.conftest import copy_backup
from tests.tamper import add_sidecar, first, read_entries, rewrite, write_entries

NS_A = "monitoring-000"
NS_B = "payments-001"


def seal(backup: Path, key: Path, *extra: str) -> None:
    code, out, err = run("seal", backup, "--key", key, *extra)
    assert code == 0, err
    assert "sealed demo-small" in out or "sealed demo-v153" in out or "sealed " in out


def verify_json(backup: Path, pub: Path, *extra: str | Path) -> tuple[int, dict]:
    code, out, err = run("verify", backup, "--trust", pub, "--json", *extra)
    return code, json.loads(out)


@pytest.fixture
def sealed(backup: Path, keypair: tuple[Path, Path]) -> Path:
    seal(backup, keypair[0])
    return backup


def tarball(folder: Path) -> Path:
    return folder / f"{folder.name}.tar.gz"


# --- keygen -------------------------------------------------------------------------------------

def test_keygen_writes_pkcs8_0600_and_spki(tmp_path: Path) -> None:
    code, out, _ = run("keygen", tmp_path / "k")
    assert code == 0
    assert stat.S_IMODE(os.stat(tmp_path / "k").st_mode) == 0o600
    assert (tmp_path / "k").read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert (tmp_path / "k.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert "key id" in out


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    assert run("keygen", tmp_path / "k")[0] == 0
    before = (tmp_path / "k").read_bytes()
    code, _, err = run("keygen", tmp_path / "k")
    assert code == 3 and "already exists" in err
    assert (tmp_path / "k").read_bytes() == before


# --- seal and verify, happy paths ---------------------------------------------------------------

def test_seal_writes_default_seal_and_verifies_whole(sealed: Path, keypair) -> None:
    assert (sealed / "demo-small-merkle.seal").is_file()
    code, report = verify_json(sealed, keypair[1])
    assert code == 0
    assert report["verified"] is True and report["failures"] == []
    assert report["backup"] == "demo-small"
    # 322 tar entries + 8 bucket objects (velero-backup.json and 7 sidecars).
    assert report["tree_size"] == 330 and report["checked"] == 330
    assert len(report["root"]) == 64


def test_verify_human_output(sealed: Path, keypair) -> None:
    code, out, _ = run("verify", sealed, "--trust", keypair[1])
    assert code == 0
    assert out.startswith("VERIFIED: backup demo-small")


def test_verify_namespace_and_resource(sealed: Path, keypair) -> None:
    code, report = verify_json(sealed, keypair[1], "--namespace", NS_A)
    assert code == 0 and report["verified"]
    read = read_entries(tarball(sealed))
    entries = [n for n, _ in read]
    in_ns = [n for n in entries if f"/namespaces/{NS_A}/" in n or n.endswith(f"/cluster/{NS_A}.json")]
    # With includeClusterResources unset, a restore of one namespace can also apply every kind
    # of cluster-scoped item (as additional items: docs/format.md §9.2), so all of them are in
    # scope; the other namespaces' Namespace objects are not.
    cluster = [n for n in entries if "/cluster/" in n and "resources/namespaces/" not in n]
    # Plus metadata/version, velero-backup.json and the volume sidecars a restore reads.
    assert report["checked"] == len(in_ns) + len(cluster) + 1 + 4
    assert report["scope_detail"]["namespaces"] == [NS_A]
    path = first(read, f"resources/deployments.apps/namespaces/{NS_B}/")
    code, report = verify_json(sealed, keypair[1], "--resource", path)
    # The resource, and velero-backup.json (the backup's identity is in every scope).
    assert code == 0 and report["checked"] == 2


def test_verify_include_cluster_resources_three_states(sealed: Path, keypair) -> None:
    """Velero's three-state flag: =true adds every Namespace object of the backup; =false
    leaves out every cluster-scoped item but the kinds that must-include actions pull in."""
    entries = [n for n, _ in read_entries(tarball(sealed))]
    _, unset = verify_json(sealed, keypair[1], "--namespace", NS_A)
    _, true = verify_json(sealed, keypair[1], "--namespace", NS_A, "--include-cluster-resources")
    _, true2 = verify_json(sealed, keypair[1], "--namespace", NS_A, "--include-cluster-resources=true")
    _, false = verify_json(sealed, keypair[1], "--namespace", NS_A, "--include-cluster-resources=false")
    other_ns_objects = [n for n in entries if n.startswith("resources/namespaces/")
                        and not n.endswith(f"/{NS_A}.json")]
    assert true["checked"] == true2["checked"] == unset["checked"] + len(other_ns_objects)
    must_include = ("resources/persistentvolumes/", "resources/priorityclasses.scheduling.k8s.io/",
                    "resources/volumesnapshotcontents.snapshot.storage.k8s.io/")
    dropped = [n for n in entries if "/cluster/" in n and "resources/namespaces/" not in n
               and not n.startswith(must_include)]
    assert dropped and false["checked"] == unset["checked"] - len(dropped)
    assert true["scope_detail"]["selection"]["include_cluster_resources"] is True
    assert false["scope_detail"]["selection"]["include_cluster_resources"] is False
    assert unset["scope_detail"]["selection"]["include_cluster_resources"] is None


def test_reordered_and_recompressed_archive_still_verifies(sealed: Path, keypair) -> None:
    rewrite(tarball(sealed), lambda entries: list(reversed(entries)))
    code, report = verify_json(sealed, keypair[1])
    assert code == 0, report["failures"]
    assert any("recompressed or reordered" in n for n in report["notes"])


def test_bare_tarball(tmp_path: Path, keypair) -> None:
    bare = tmp_path / "demo-small-data.tar.gz"
    shutil.copy(copy_backup("demo-small", tmp_path / "x") / "demo-small.tar.gz", bare)
    seal(bare, keypair[0])
    assert (tmp_path / "demo-small-data.tar.gz.seal").is_file()
    code, report = verify_json(bare, keypair[1])
    assert code == 0 and report["backup"] == "demo-small" and report["uid"] == "-"
    assert report["tree_size"] == 322


def test_inspect(sealed: Path) -> None:
    code, out, _ = run("inspect", sealed / "demo-small-merkle.seal", "--json")
    assert code == 0
    info = json.loads(out)
    assert info["backup"] == "demo-small" and info["leaves"] == 330 and info["verified"] is False
    assert info["leaves_by_namespace"][NS_A] > 0
    assert info["version"] == 2 and len(info["leaves_blake3"]) == 64
    code, out, _ = run("inspect", sealed / "demo-small-merkle.seal")
    assert code == 0 and "UNVERIFIED" in out and "merkle-backup/checkpoint/v2" in out


# --- tampering is caught and named --------------------------------------------------------------

def test_modified_manifest_is_named(sealed: Path, keypair) -> None:
    target = {}

    def change(entries):
        name = first(entries, f"resources/deployments.apps/namespaces/{NS_A}/")
        target["path"] = name
        return [(n, add_sidecar(d) if n == name else d) for n, d in entries]

    rewrite(tarball(sealed), change)
    code, report = verify_json(sealed, keypair[1])
    assert code == 1 and report["verified"] is False
    assert report["failures"] == [
        {"path": target["path"], "problem": "modified", "detail": report["failures"][0]["detail"]}
    ]
    code, out, _ = run("verify", sealed, "--trust", keypair[1])
    assert code == 1 and "NOT AUTHENTIC" in out and target["path"] in out


def test_damage_outside_namespace_is_counted_not_failed(sealed: Path, keypair) -> None:
    rewrite(tarball(sealed), lambda es: [
        (n, add_sidecar(d) if n == first(es, f"resources/deployments.apps/namespaces/{NS_A}/") else d)
        for n, d in es])
    code, report = verify_json(sealed, keypair[1], "--namespace", NS_B)
    assert code == 0 and report["out_of_scope_failures"] == 1
    code, report = verify_json(sealed, keypair[1], "--namespace", NS_A)
    assert code == 1 and report["failures"][0]["problem"] == "modified"


@pytest.mark.parametrize("problem", ["missing", "unexpected", "duplicate"])
def test_entry_removed_added_duplicated(sealed: Path, keypair, problem: str) -> None:
    victim = {}

    def change(entries):
        name = first(entries, f"resources/configmaps/namespaces/{NS_A}/")
        victim["path"] = name
        if problem == "missing":
            return [(n, d) for n, d in entries if n != name]
        if problem == "duplicate":
            return entries + [(name, b'{"evil":true}')]
        extra = "resources/clusterrolebindings.rbac.authorization.k8s.io/cluster/backdoor.json"
        victim["path"] = extra
        return entries + [(extra, b'{"kind":"ClusterRoleBinding"}')]

    rewrite(tarball(sealed), change)
    code, report = verify_json(sealed, keypair[1])
    assert code == 1
    assert {"path": victim["path"], "problem": problem} in [
        {"path": f["path"], "problem": f["problem"]} for f in report["failures"]]


def test_bucket_object_edited_or_deleted(sealed: Path, keypair) -> None:
    (sealed / "demo-small-volumeinfo.json.gz").unlink()
    code, report = verify_json(sealed, keypair[1], "--namespace", NS_A)
    assert code == 1
    assert report["failures"][0]["path"] == "demo-small-volumeinfo.json.gz"
    assert report["failures"][0]["problem"] == "missing"


def test_seal_of_another_backup_is_rejected(tmp_path: Path, keypair) -> None:
    a = copy_backup("demo-small", tmp_path / "a")
    b = copy_backup("demo-v153", tmp_path / "b")
    seal(b, keypair[0])
    code, out, err = run("verify", a, "--trust", keypair[1], "--seal", b / "demo-v153-merkle.seal")
    assert code == 1 and "demo-v153" in err


def test_uid_option_catches_replay(sealed: Path, keypair) -> None:
    assert verify_json(sealed, keypair[1], "--uid", "2e242fc8-0e85-4f16-bc6e-9d5f38be1ce3")[0] == 0
    code, _, err = run("verify", sealed, "--trust", keypair[1], "--uid", "11111111-2222-3333-4444-555555555555")
    assert code == 1 and "uid" in err


# --- refusals and could-not-check ---------------------------------------------------------------

def test_wrong_key_is_not_authentic(sealed: Path, other_keypair) -> None:
    code, _, err = run("verify", sealed, "--trust", other_keypair[1])
    assert code == 1 and "not signed by any trusted key" in err


def test_second_trusted_key_is_accepted(sealed: Path, keypair, other_keypair) -> None:
    code, _, _ = run("verify", sealed, "--trust", other_keypair[1], "--trust", keypair[1])
    assert code == 0


@pytest.mark.parametrize("case", ["missing-key", "missing-backup", "missing-seal", "garbage-key"])
def test_could_not_check_exits_3(backup: Path, keypair, tmp_path: Path, case: str) -> None:
    pub = keypair[1]
    target = backup
    if case == "missing-key":
        pub = tmp_path / "nope.pub"
    elif case == "missing-backup":
        target = tmp_path / "nope"
    elif case == "garbage-key":
        pub = tmp_path / "garbage.pub"
        pub.write_text("not a key")
    code, out, err = run("verify", target, "--trust", pub)
    assert code == 3
    assert err.startswith("merkle-backup: error: ") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_corrupt_seal_never_verifies(sealed: Path, keypair) -> None:
    path = sealed / "demo-small-merkle.seal"
    data = bytearray(path.read_bytes())
    for position in range(0, len(data), max(1, len(data) // 97)):
        corrupted = bytearray(data)
        corrupted[position] ^= 0x01
        path.write_bytes(bytes(corrupted))
        code, _, err = run("verify", sealed, "--trust", keypair[1])
        assert code in (1, 3), position
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_seal_refuses_unfinished_backup(backup: Path, keypair) -> None:
    doc = json.loads((backup / "velero-backup.json").read_text())
    doc["status"]["phase"] = "InProgress"
    (backup / "velero-backup.json").write_text(json.dumps(doc))
    code, _, err = run("seal", backup, "--key", keypair[0])
    assert code == 3 and "not final" in err
    assert not (backup / "demo-small-merkle.seal").exists()


def test_seal_refuses_existing_seal_unless_replace(sealed: Path, keypair) -> None:
    before = (sealed / "demo-small-merkle.seal").read_bytes()
    code, _, err = run("seal", sealed, "--key", keypair[0])
    assert code == 3 and "already exists" in err
    assert (sealed / "demo-small-merkle.seal").read_bytes() == before
    assert run("seal", sealed, "--key", keypair[0], "--replace")[0] == 0


def test_seal_refuses_bad_archive_and_writes_nothing(backup: Path, keypair) -> None:
    entries = read_entries(tarball(backup))
    write_entries(tarball(backup), entries + [entries[5]])  # a duplicate path
    code, _, err = run("seal", backup, "--key", keypair[0])
    assert code == 3 and "duplicate" in err and entries[5][0] in err
    assert [p.name for p in backup.iterdir() if p.name.endswith(".seal")] == []
    assert [p.name for p in backup.iterdir() if p.name.startswith(".")] == []


def test_usage_error_exits_2(backup: Path) -> None:
    code, _, _ = run("verify", backup)  # no --trust
    assert code == 2


# --- the installed entry point ------------------------------------------------------------------

def test_demo_runs_end_to_end() -> None:
    proc = subprocess.run([sys.executable, "-m", "merkle_backup.cli", "demo"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "NOT AUTHENTIC" in proc.stdout and "modified" in proc.stdout
    assert "tampering was caught" in proc.stdout


# --- T75: --namespace is one exact name ----------------------------------------------------------

@pytest.mark.parametrize("name", ["prod*", "*", "monitoring-*", "Monitoring-000", "a,b",
                                  "x" * 64, "ns/evil", "monitoring-000 "])
def test_t75_namespace_that_cannot_be_a_namespace_is_a_usage_error(sealed: Path, keypair,
                                                                   tmp_path: Path,
                                                                   name: str) -> None:
    """T75: `--namespace 'prod*'` printed VERIFIED with nothing matched while the namespaces
    meant were tampered; now a usage error (exit 2, one line) pointing to --include-namespaces,
    for verify and prove alike."""
    target = tarball(sealed)
    rewrite(target, lambda entries: [(n, add_sidecar(d) if n == first(entries, f"resources/deployments.apps/namespaces/{NS_A}/") else d) for n, d in entries])
    code, out, err = run("verify", sealed, "--trust", keypair[1], "--namespace", name)
    assert code == 2 and "VERIFIED" not in out, out + err
    assert err.count("\n") == 1 and "--include-namespaces" in err and "Traceback" not in err
    code, _, err = run("prove", sealed, "--namespace", name, "-o", tmp_path / "p.proof")
    assert code == 2 and "--include-namespaces" in err and not (tmp_path / "p.proof").exists()
    # The glob through --include-namespaces catches the tampering.
    code, out, _ = run("verify", sealed, "--trust", keypair[1], "--include-namespaces", "monitoring-*")
    assert code == 1 and "modified" in out
