"""T6-T7 of docs/threat-model.md: a validly signed seal, but of another backup or of an older
backup of the same name, put in place of the real one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.attacks import gotar
from tests.attacks.helpers import (
    DEMO_UID,
    EXIT_NOT_AUTHENTIC,
    EXIT_OK,
    expect_not_authentic,
    expect_refusal,
    seal,
    seal_path,
    tarball,
    verify,
)
from tests.conftest import copy_backup
from tests.tamper import add_sidecar

OLD_UID = "0b1d0b1d-0000-4000-8000-000000000001"


def _replace_folder(target: Path, source: Path, rename: tuple[str, str] | None = None) -> None:
    """Every object of ``target`` replaced by ``source``'s, names rewritten old -> new."""
    for p in target.iterdir():
        p.unlink()
    for p in source.iterdir():
        name = p.name.replace(*rename) if rename else p.name
        shutil.copy(p, target / name)


@pytest.mark.parametrize("swap", ["whole-folder", "folder-with-edited-backup-json", "tarball-only"])
def test_t6_backup_swapped_for_another_validly_signed_one(
    sealed: Path, tmp_path: Path, keypair, swap: str
) -> None:
    """T6: demo-v153, sealed with the same trusted key, put in place of demo-small: all its
    objects renamed (its velero-backup.json as is, or edited to name demo-small), or only its
    tarball under demo-small's seal."""
    other = copy_backup("demo-v153", tmp_path / "other")
    seal(other, keypair[0])
    if swap == "tarball-only":
        ours = {m.name for m in gotar.load(tarball(sealed))}
        theirs = {m.name for m in gotar.load(tarball(other))}
        shutil.copy(tarball(other), tarball(sealed))
        report = expect_not_authentic(
            sealed, keypair[1],
            ("resources/deployments.apps/namespaces/monitoring-000/hazelcast-638265.json",
             "missing"),
            ("resources/pods/namespaces/monitoring-001/pod-sio-small.json", "unexpected"),
        )
        named = {f["path"] for f in report["failures"]}
        assert ours ^ theirs <= named  # every entry of one and not the other
        return
    _replace_folder(sealed, other, ("demo-v153", "demo-small"))
    if swap == "folder-with-edited-backup-json":
        doc = json.loads((sealed / "velero-backup.json").read_text())
        doc["metadata"]["name"] = "demo-small"
        (sealed / "velero-backup.json").write_text(json.dumps(doc, indent=2))
    line = expect_refusal(EXIT_NOT_AUTHENTIC, "verify", sealed, "--trust", keypair[1],
                          says=("not authentic",
                                "the seal is for backup 'demo-v153', not 'demo-small'"))
    assert line.startswith("merkle-backup: not authentic: ")
    code, report = verify(sealed, keypair[1])
    assert code == EXIT_NOT_AUTHENTIC and report["verified"] is False
    assert "demo-v153" in report["error"]


def _older_backup(tmp_path: Path, key: Path, *, bare: bool) -> Path:
    """An older demo-small: another Backup object (another uid) whose Deployment ran an image
    with a sidecar, sealed when it was current. Returns its folder (or its bare tarball)."""
    folder = copy_backup("demo-small", tmp_path / "older")
    doc = json.loads((folder / "velero-backup.json").read_text())
    doc["metadata"]["uid"] = OLD_UID
    (folder / "velero-backup.json").write_text(json.dumps(doc, indent=2))
    members = gotar.load(tarball(folder))
    for name in ("resources/deployments.apps/namespaces/monitoring-000/frontend.json",
                 "resources/deployments.apps/v1-preferredversion/namespaces/monitoring-000/frontend.json"):
        i = gotar.index_of(members, name)
        members[i] = members[i].with_data(add_sidecar(members[i].data))
    gotar.store(tarball(folder), members)
    if bare:
        seal(tarball(folder), key)
        return tarball(folder)
    seal(folder, key)
    return folder


REPLAYS = ["all-objects", "tarball-and-seal", "bare-seal-objects-deleted"]


@pytest.mark.parametrize("replay", REPLAYS)
def test_t7_older_backup_of_the_same_name_replayed_with_its_own_seal(
    sealed: Path, tmp_path: Path, keypair, replay: str
) -> None:
    """T7: the older backup put back with its own valid seal. Caught with the uid of the
    Backup object in the cluster (verify --uid). Without --uid it is caught only when the
    current velero-backup.json stays; when every object is replayed it VERIFIES: the
    documented limitation (docs/threat-model.md, "What is not proven")."""
    older = _older_backup(tmp_path, keypair[0], bare=replay == "bare-seal-objects-deleted")
    if replay == "all-objects":
        _replace_folder(sealed, older)
    elif replay == "tarball-and-seal":
        shutil.copy(tarball(older), tarball(sealed))
        shutil.copy(seal_path(older), seal_path(sealed))
    else:  # a bare-tarball seal (uid "-") in the folder, every bucket object deleted
        for p in sealed.iterdir():
            p.unlink()
        shutil.copy(older, tarball(sealed))
        shutil.copy(older.with_name(older.name + ".seal"), seal_path(sealed))

    code, report = verify(sealed, keypair[1])
    if replay == "tarball-and-seal":
        # The current velero-backup.json is not the one the replayed seal sealed.
        assert code == EXIT_NOT_AUTHENTIC
        assert ("velero-backup.json", "modified") in {
            (f["path"], f["problem"]) for f in report["failures"]}
    else:
        assert code == EXIT_OK, report  # the limitation: a replay of every object verifies
        assert report["verified"] is True

    shown = "unknown (sealed from a bare tarball)" if replay.startswith("bare") else OLD_UID
    expect_refusal(EXIT_NOT_AUTHENTIC, "verify", sealed, "--trust", keypair[1], "--uid", DEMO_UID,
                   says=(f"uid {shown}", DEMO_UID))
    if replay == "all-objects":
        # What --uid compares with: the sealed uid is printed by every successful verify.
        assert report["uid"] == OLD_UID
