"""T6, T7, T13 and T20 of docs/threat-model.md, the scope rules of docs/format.md §9.2: a check
before a selective restore covers every file that restore can read, as Velero's own restore code
selects them, and stays selective.

The backup is restore-mix (tests/fixtures/README.md): Go-written, several namespaces, a Pod whose
claim is bound to a PersistentVolume and snapshotted (VolumeSnapshot, VolumeSnapshotContent, a
snapshotter Secret in another namespace), DataUploads in Velero's namespace, PriorityClasses and
RBAC names with a backslash, a tab and DEL. Each attack edits one entry byte-exactly in Go's tar
stream (tests/attacks/gotar.py) and runs the real CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.attacks import gotar
from tests.attacks.helpers import (
    EXIT_CANNOT_CHECK,
    EXIT_NOT_AUTHENTIC,
    EXIT_OK,
    EXIT_USAGE,
    expect_not_authentic,
    expect_refusal,
    failures,
    run,
    seal,
    tarball,
    verify,
)
from tests.conftest import FIXTURES, copy_backup
from tests.storage.server import clone_backup

MIX = "restore-mix"
DATAUPLOAD_B = "resources/datauploads.velero.io/namespaces/velero/restore-mix-data-api-0.json"
VSC = "resources/volumesnapshotcontents.snapshot.storage.k8s.io/cluster/snapcontent-web-0.json"
PV = "resources/persistentvolumes/cluster/pv-web-0.json"
PRIORITY = "resources/priorityclasses.scheduling.k8s.io/cluster/high.json"
BINDING = "resources/clusterrolebindings.rbac.authorization.k8s.io/cluster/viewers.json"
NS_DEV = "resources/namespaces/cluster/dev.json"
NS_PROD_A = "resources/namespaces/cluster/prod-a.json"
DEV_CONFIG = "resources/configmaps/namespaces/dev/toy.json"
A_CONFIG = "resources/configmaps/namespaces/prod-a/web-config.json"
A_PVC = "resources/persistentvolumeclaims/namespaces/prod-a/data-web-0.json"
A_SECRET = "resources/secrets/namespaces/prod-a/web-creds.json"
B_DEPLOY = "resources/deployments.apps/namespaces/prod-b/api.json"
WEIRD_ROLE = "resources/clusterroles.rbac.authorization.k8s.io/cluster/ops\\tab\there-del\x7f.json"


@pytest.fixture
def mix(tmp_path: Path, keypair) -> Path:
    folder = copy_backup(MIX, tmp_path)
    seal(folder, keypair[0])
    return folder


def tamper(folder: Path, path: str) -> None:
    """Change one value of the manifest at ``path`` (every copy of it), as an attacker would."""
    members = gotar.load(tarball(folder))
    version_copy = path.replace("/cluster/", "/v1-preferredversion/cluster/", 1) \
        if "/cluster/" in path else path.replace("/namespaces/", "/v1-preferredversion/namespaces/", 1)
    if "datauploads" in path:
        version_copy = path.replace("/namespaces/", "/v2alpha1-preferredversion/namespaces/", 1)
    hit = 0
    for i, m in enumerate(members):
        if m.name in (path, version_copy):
            obj = json.loads(m.data)
            obj.setdefault("metadata", {}).setdefault("annotations", {})["evil"] = "yes"
            members[i] = m.with_data(json.dumps(obj, separators=(",", ":"), sort_keys=True).encode())
            hit += 1
    assert hit == 2, path
    gotar.store(tarball(folder), members)


def outcome(folder: Path, pub: Path, *flags: str) -> tuple[int, set[tuple[str, str]], int]:
    code, report = verify(folder, pub, *flags)
    assert code in (EXIT_OK, EXIT_NOT_AUTHENTIC), report
    return code, failures(report), report["out_of_scope_failures"]


# Each row: the entry tampered, the selection, and whether that restore can read it.
CASES = [
    # resourceMustHave: DataUploads (another namespace's, even) whatever the namespace filter.
    (DATAUPLOAD_B, ("--namespace", "prod-a"), True),
    (DATAUPLOAD_B, ("--include-namespaces", "dev", "--include-cluster-resources=false"), True),
    (DATAUPLOAD_B, ("--namespace", "prod-a", "--exclude-resources", "datauploads.velero.io"), True),
    # Must-include additional items pass includeClusterResources=false.
    (VSC, ("--namespace", "prod-a", "--include-cluster-resources=false"), True),
    (PV, ("--namespace", "prod-a", "--include-cluster-resources=false"), True),
    (PRIORITY, ("--namespace", "prod-a", "--include-cluster-resources=false"), True),
    # Unset: cluster-scoped additional items of any kind (plugins) pass a namespace filter.
    (PV, ("--namespace", "prod-a"), True),
    (BINDING, ("--namespace", "prod-a"), True),
    (BINDING, ("--namespace", "prod-a", "--include-cluster-resources=false"), False),
    (BINDING, ("--namespace", "prod-a", "--include-cluster-resources"), True),
    # Namespace objects: the selected namespaces'; every one with =true or all namespaces.
    (NS_PROD_A, ("--namespace", "prod-a", "--include-cluster-resources=false"), True),
    (NS_DEV, ("--namespace", "prod-a"), False),
    (NS_DEV, ("--namespace", "prod-a", "--include-cluster-resources=true"), True),
    (NS_DEV, ("--include-resources", "deployments.apps"), True),  # every namespace selected
    # Namespaced items: selective by namespace, Velero's globs and excludes.
    (DEV_CONFIG, ("--namespace", "prod-a"), False),
    (DEV_CONFIG, ("--include-namespaces", "prod-*"), False),
    (DEV_CONFIG, ("--include-namespaces", "*", "--exclude-namespaces", "dev"), False),
    (DEV_CONFIG, ("--include-namespaces", "prod-a,dev"), True),
    (DEV_CONFIG, ("--include-namespaces", "d?v"), True),
    (DEV_CONFIG, ("--include-namespaces", "[a-e]*"), True),
    (B_DEPLOY, ("--include-namespaces", "prod-*", "--exclude-namespaces", "prod-b"), False),
    (B_DEPLOY, ("--include-namespaces", "prod-*"), True),
    # A pattern that matches no namespace: Velero restores every namespace (wildcard expansion).
    (DEV_CONFIG, ("--include-namespaces", "staging-*"), True),
    # Resource filters: exact names narrow; additional-item kinds stay; unresolvable names do not.
    (A_CONFIG, ("--namespace", "prod-a", "--include-resources", "deployments.apps"), False),
    (A_PVC, ("--namespace", "prod-a", "--include-resources", "deployments.apps"), True),
    (A_SECRET, ("--namespace", "prod-a", "--include-resources", "deployments.apps"), True),
    (A_CONFIG, ("--namespace", "prod-a", "--include-resources", "deploy"), True),
    (A_CONFIG, ("--namespace", "prod-a", "--exclude-resources", "configmaps"), False),
    (A_CONFIG, ("--namespace", "prod-a", "--exclude-resources", "cm"), True),
]


@pytest.mark.parametrize("path,flags,read", CASES, ids=lambda v: v if isinstance(v, str) else None)
def test_t20_each_item_tampered_in_turn(mix: Path, keypair, path: str, flags, read: bool) -> None:
    """T20: an item that the restore of the selection can read is in the verified scope (exit 1,
    named `modified`); one it cannot read fails nothing and is counted as outside the scope."""
    tamper(mix, path)
    if read:
        expect_not_authentic(mix, keypair[1], (path, "modified"), extra=flags)
    else:
        code, found, outside = outcome(mix, keypair[1], *flags)
        # Both copies (classic and -preferredversion) were changed, so two problems outside.
        assert code == EXIT_OK and not found and outside == 2, (found, outside)
        human = run("verify", mix, "--trust", keypair[1], *flags)
        assert human.out.startswith("VERIFIED")
        assert "outside this scope: 2 problem(s) in entries the selection does not read" in human.out


def test_matching_no_namespace_is_said_on_the_verdict_line(mix: Path, keypair) -> None:
    human = run("verify", mix, "--trust", keypair[1], "--namespace", "staging")
    assert human.code == EXIT_OK
    assert human.out.splitlines()[0].endswith("(matches no sealed namespace)")
    human = run("verify", mix, "--trust", keypair[1], "--include-namespaces", "staging-*")
    assert "no pattern matches a sealed namespace: Velero restores all of them" in human.out
    code, report = verify(mix, keypair[1], "--include-namespaces", "prod-*")
    assert code == EXIT_OK and report["scope_detail"]["namespaces"] == ["prod-a", "prod-b"]


@pytest.mark.parametrize("flags,says", [
    (("--namespace", ""), "--namespace: an empty name selects nothing"),
    (("--include-namespaces", ""), "--include-namespaces: an empty name selects nothing"),
    (("--include-namespaces", "prod-a,"), "an empty name selects nothing"),
    (("--exclude-namespaces", ""), "--exclude-namespaces: an empty name selects nothing"),
    (("--include-resources", ""), "--include-resources: an empty name"),
    (("--include-namespaces", "prod-["), "unclosed '['"),
    (("--include-namespaces", "{a"), "is not a valid pattern"),
    (("--include-namespaces", "*,prod-a"), "'*' must stand alone"),
    (("--exclude-namespaces", "*"), "Velero refuses '*' in excludes"),
    (("--include-namespaces", "prod-a", "--exclude-namespaces", "prod-a"), "both included and excluded"),
    # Velero's flag splits at commas too: "prod-{a" and "b}*", which its expansion refuses.
    (("--include-namespaces", "prod-{a,b}*"), "Velero refuses '{'"),
    (("--include-namespaces", "prod-**"), "Velero refuses '**'"),
    (("--include-resources", "*,pods"), "'*' must stand alone"),
])
def test_a_selection_that_cannot_select_is_a_usage_error(mix: Path, keypair, flags, says) -> None:
    """Never a vacuous VERIFIED: an empty name (an unset shell variable), a pattern Velero or
    its glob library refuses, exit 2 with one line."""
    expect_refusal(EXIT_USAGE, "verify", mix, "--trust", keypair[1], *flags, says=(says,))


def test_names_velero_writes_seal_and_verify(mix: Path, keypair) -> None:
    """RBAC names with a backslash, a tab and DEL (Kubernetes' path-segment rule allows them,
    Velero writes and restores them) are sealed; tampering with one is named."""
    code, report = verify(mix, keypair[1], "--resource", WEIRD_ROLE)
    assert code == EXIT_OK and report["checked"] == 2  # the resource and velero-backup.json
    tamper(mix, WEIRD_ROLE)
    code, report = verify(mix, keypair[1])
    assert code == EXIT_NOT_AUTHENTIC and (WEIRD_ROLE, "modified") in failures(report)


def test_resource_by_bucket_object_name_and_unknown_resources(mix: Path, keypair) -> None:
    code, report = verify(mix, keypair[1], "--resource", "restore-mix-volumeinfo.json.gz")
    assert code == EXIT_OK and report["checked"] == 2
    (mix / "restore-mix-volumeinfo.json.gz").write_bytes(b"\x1f\x8b junk")
    code, report = verify(mix, keypair[1], "--resource", "restore-mix-volumeinfo.json.gz")
    assert code == EXIT_NOT_AUTHENTIC
    assert failures(report) == {("restore-mix-volumeinfo.json.gz", "modified")}
    nowhere = "resources/pods/namespaces/prod-a/nowhere.json"
    for command in (("verify", mix, "--trust", keypair[1]),
                    ("prove", mix, "--trust", keypair[1], "-o", mix.parent / "p.proof")):
        expect_refusal(EXIT_USAGE, *command, "--resource", nowhere,
                       says=(nowhere, "no such resource"))


def test_report_shows_created_key_and_scope(mix: Path, keypair) -> None:
    from merkle_backup.signing import load_public_key

    key_id = load_public_key(keypair[1]).key_id.hex()
    code, report = verify(mix, keypair[1], "--include-namespaces", "prod-*",
                          "--include-cluster-resources=false")
    assert code == EXIT_OK and report["key_id"] == key_id
    assert report["created"].endswith("Z") and report["created"].startswith("20")
    detail = report["scope_detail"]
    assert detail["selection"]["include_namespaces"] == ["prod-*"]
    assert detail["selection"]["include_cluster_resources"] is False
    assert detail["leaves_in_scope"] == report["checked"] > 0
    human = run("verify", mix, "--trust", keypair[1], "--include-namespaces", "prod-*")
    assert f"signed by key {key_id[:16]}" in human.out and f"sealed {report['created']}" in human.out
    assert "namespaces selected: 2 (prod-a, prod-b)" in human.out


# --- T6: identity ---------------------------------------------------------------------------

def _named_copy(tmp_path: Path, name: str, keypair) -> Path:
    """restore-mix as backup ``name`` (its velero-backup.json and objects renamed), sealed."""
    folder = clone_backup(FIXTURES / MIX, tmp_path / "bucket" / "backups", name)
    seal(folder, keypair[0])
    return folder


@pytest.mark.parametrize("victim,other", [("nightly-data", "nightly"),
                                           ("nightly.tar.gz", "nightly")])
def test_t6_folder_named_like_a_bare_tarball_swapped(tmp_path: Path, keypair, victim, other) -> None:
    """T6: a folder or prefix is named by its own name, exactly; the `velero backup download`
    rule (X-data.tar.gz is backup X) is for bare tarballs only. A genuine backup named
    `nightly-data` with its whole folder swapped for backup `nightly`'s validly signed objects
    is not authentic, in verify, verify --namespace and audit."""
    good = _named_copy(tmp_path, victim, keypair)
    donor = _named_copy(tmp_path / "d", other, keypair)
    for p in list(good.iterdir()):
        p.unlink()
    for p in donor.iterdir():
        (good / p.name.replace(other, victim, 1)).write_bytes(p.read_bytes())
    for flags in ((), ("--namespace", "prod-a")):
        expect_refusal(EXIT_NOT_AUTHENTIC, "verify", good, "--trust", keypair[1], *flags,
                       says=(f"the seal is for backup '{other}', not '{victim}'",))
    audit = run("audit", good.parent.parent, "--trust", keypair[1], "--json")
    assert audit.code == EXIT_NOT_AUTHENTIC
    row = next(r for r in audit.json()["backups"] if r["name"] == victim)
    assert row["status"] == "tampered"


def test_bare_tarball_download_name_still_verifies(tmp_path: Path, keypair) -> None:
    """The bare-tarball rule itself: `velero backup download` saves X-data.tar.gz."""
    folder = _named_copy(tmp_path, "nightly", keypair)
    bare = tmp_path / "nightly-data.tar.gz"
    bare.write_bytes((folder / "nightly.tar.gz").read_bytes())
    seal(bare, keypair[0])
    code, report = verify(bare, keypair[1])
    assert code == EXIT_OK and report["backup"] == "nightly"


# --- verdicts by evidence (T13) ---------------------------------------------------------------

@pytest.mark.parametrize("content", [
    b"this is not JSON",
    b'{"kind": "Backup", "metadata": {"name": "restore-mix"}}',
    b'{"kind": "Restore", "apiVersion": "velero.io/v1", "metadata": {"name": "restore-mix", "uid": "x"}}',
    b"",
], ids=["not-json", "no-uid", "another-kind", "empty"])
def test_t13_sealed_backup_object_replaced_by_anything_is_modified(mix: Path, keypair, content) -> None:
    """A sealed object whose bytes differ is tampering, whatever those bytes are: exit 1,
    `modified`, never "could not check"."""
    (mix / "velero-backup.json").write_bytes(content)
    for flags in ((), ("--namespace", "prod-a"), ("--resource", A_CONFIG)):
        report = expect_not_authentic(mix, keypair[1], ("velero-backup.json", "modified"),
                                      extra=flags)
        assert report["verified"] is False


def test_tarball_replaced_by_an_uncompressed_tar_is_modified(mix: Path, keypair) -> None:
    tar = gotar.decompress(tarball(mix))
    tarball(mix).write_bytes(tar)
    report = expect_not_authentic(mix, keypair[1], (f"{MIX}.tar.gz", "modified"))
    assert "not a gzip stream" in report["failures"][0]["detail"]


def test_a_limit_hit_on_an_authentic_backup_is_could_not_check(mix: Path, keypair) -> None:
    """--max-entry-size below the sealed backup's largest entry: exit 3 (raise the limit),
    never malformed or missing. Recompressed, so the entries are read one by one."""
    gotar.store(tarball(mix), gotar.decompress(tarball(mix)), level=1)
    assert verify(mix, keypair[1])[0] == EXIT_OK
    line = expect_refusal(EXIT_CANNOT_CHECK, "verify", mix, "--trust", keypair[1],
                          "--max-entry-size", "100", says=("max_entry_size=100", "raise it"))
    assert "sealed backup holds" in line
    expect_refusal(EXIT_CANNOT_CHECK, "verify", mix, "--trust", keypair[1], "--max-entries", "10",
                   says=("max_entries=10", "raise it"))


def test_a_limit_hit_by_a_tampered_entry_is_named(mix: Path, keypair) -> None:
    """The same limit, where the sealed backup is small: the oversized entry is the evidence."""
    members = gotar.load(tarball(mix))
    i = gotar.index_of(members, A_CONFIG)
    members[i] = members[i].with_data(b"{" + b" " * 5000 + b"}")
    gotar.store(tarball(mix), members)
    report = expect_not_authentic(mix, keypair[1], (A_CONFIG, "modified"),
                                  extra=("--max-entry-size", "4096"))
    assert not [f for f in report["failures"] if f["problem"] == "missing"]
