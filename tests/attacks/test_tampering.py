"""T1-T5 of docs/threat-model.md: the tarball's entries changed, added, removed, duplicated or
reordered after sealing. Every change is byte-exact surgery on the Go-written stream
(tests/attacks/gotar.py): the members the attack does not touch keep Go's bytes."""

from __future__ import annotations

import json
import random
import zlib
from pathlib import Path

import pytest

from tests.attacks import gotar
from tests.attacks.helpers import (
    EXIT_OK,
    NS_A,
    NS_B,
    expect_not_authentic,
    tarball,
    verify,
)
from tests.tamper import add_sidecar

DEPLOYMENT = f"resources/deployments.apps/namespaces/{NS_A}/hazelcast-638265.json"
DEPLOYMENT_PREFERRED = (
    f"resources/deployments.apps/v1-preferredversion/namespaces/{NS_A}/hazelcast-638265.json"
)
IMAGE = b"quay.io/pires/hazelcast-kubernetes:3.8_1"

CLUSTER_ADMIN_BINDING = json.dumps({
    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
    "metadata": {"name": "backdoor"},
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                "name": "cluster-admin"},
    "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": NS_A}],
}, separators=(",", ":"), sort_keys=True).encode()


def test_t1_one_byte_of_a_manifest_changed(sealed: Path, keypair) -> None:
    """T1: one byte of a Deployment's image name changed; the tar stream differs in exactly
    that byte (same size, so Go's header is untouched)."""
    members = gotar.load(tarball(sealed))
    before = gotar.build(members)
    i = gotar.index_of(members, DEPLOYMENT)
    data = members[i].data
    assert data.count(IMAGE) == 1
    members[i] = members[i].with_data(data.replace(IMAGE, IMAGE.replace(b"pires", b"pirex")))
    after = gotar.build(members)
    assert len(after) == len(before)
    assert sum(a != b for a, b in zip(before, after)) == 1
    gotar.store(tarball(sealed), after)

    report = expect_not_authentic(sealed, keypair[1], (DEPLOYMENT, "modified"))
    assert len(report["failures"]) == 1
    assert "sealed 1186 bytes" in report["failures"][0]["detail"]


def test_t1_sidecar_container_added(sealed: Path, keypair) -> None:
    """T1: the velero#1072 attack: a sidecar added to a Deployment, in both of its copies
    (classic, read by default, and -preferredversion, read with EnableAPIGroupVersions)."""
    members = gotar.load(tarball(sealed))
    for name in (DEPLOYMENT, DEPLOYMENT_PREFERRED):
        i = gotar.index_of(members, name)
        members[i] = members[i].with_data(add_sidecar(members[i].data))
    gotar.store(tarball(sealed), members)

    report = expect_not_authentic(
        sealed, keypair[1], (DEPLOYMENT, "modified"), (DEPLOYMENT_PREFERRED, "modified")
    )
    assert len(report["failures"]) == 2
    # A namespace-scoped verify before a selective restore names it too.
    expect_not_authentic(sealed, keypair[1], (DEPLOYMENT, "modified"), extra=("--namespace", NS_A))


ADDED = {
    "namespaced": [f"resources/deployments.apps/namespaces/{NS_A}/miner.json",
                   f"resources/deployments.apps/v1-preferredversion/namespaces/{NS_A}/miner.json"],
    "cluster-scoped": [
        "resources/clusterrolebindings.rbac.authorization.k8s.io/cluster/backdoor.json",
        ("resources/clusterrolebindings.rbac.authorization.k8s.io/v1-preferredversion/cluster/"
         "backdoor.json")],
    "version-directory": [
        f"resources/deployments.apps/v1beta1/namespaces/{NS_A}/hazelcast-638265.json"],
}


@pytest.mark.parametrize("kind", list(ADDED))
def test_t2_entry_added(sealed: Path, keypair, kind: str) -> None:
    """T2: a new Deployment in a namespace; a ClusterRoleBinding to cluster-admin; a copy of a
    sealed Deployment with a sidecar in a version directory that was never backed up
    (restored by a server with EnableAPIGroupVersions)."""
    members = gotar.load(tarball(sealed))
    deployment = gotar.find(members, DEPLOYMENT).data
    data = CLUSTER_ADMIN_BINDING if kind == "cluster-scoped" else add_sidecar(deployment)
    paths = ADDED[kind]
    members[5:5] = [gotar.go_member(path, data) for path in paths]
    gotar.store(tarball(sealed), members)

    report = expect_not_authentic(sealed, keypair[1], *[(p, "unexpected") for p in paths])
    assert len(report["failures"]) == len(paths)
    # The scope a restore of that namespace (with its cluster resources) reads catches it too.
    extra = ("--namespace", NS_A, "--include-cluster-resources")
    expect_not_authentic(sealed, keypair[1], (paths[0], "unexpected"), extra=extra)


def test_t3_entry_removed(sealed: Path, keypair) -> None:
    """T3: a NetworkPolicy deleted from the archive (both copies): its restore would leave the
    namespace open."""
    policy = f"resources/networkpolicies.networking.k8s.io/namespaces/{NS_B}/node-exporter.json"
    preferred = policy.replace("/namespaces/", "/v1-preferredversion/namespaces/", 1)
    members = [m for m in gotar.load(tarball(sealed)) if m.name not in (policy, preferred)]
    assert len(members) == 320
    gotar.store(tarball(sealed), members)

    report = expect_not_authentic(sealed, keypair[1], (policy, "missing"), (preferred, "missing"))
    assert len(report["failures"]) == 2
    expect_not_authentic(sealed, keypair[1], (policy, "missing"), extra=("--namespace", NS_B))


def test_t4_duplicate_path_last_copy_wins(sealed: Path, keypair) -> None:
    """T4: a second copy of a sealed path with a sidecar, appended after the original: Velero's
    extractor writes both to one file, so the restore applies the last one."""
    members = gotar.load(tarball(sealed))
    original = gotar.find(members, DEPLOYMENT)
    evil = gotar.go_member(DEPLOYMENT, add_sidecar(original.data))
    gotar.store(tarball(sealed), members + [evil])

    report = expect_not_authentic(sealed, keypair[1], (DEPLOYMENT, "duplicate"))
    assert failures_of(report) == [(DEPLOYMENT, "duplicate")]
    assert "restore keeps the last" in report["failures"][0]["detail"]


def test_t5_reordered_and_recompressed_still_verifies(sealed: Path, keypair) -> None:
    """T5: entry order is not a contract (VELERO.md §1): every Go-written member shuffled and
    the stream recompressed at another level still verifies, with a note saying so."""
    members = gotar.load(tarball(sealed))
    random.Random(5).shuffle(members)
    co = zlib.compressobj(9, zlib.DEFLATED, 31)
    tarball(sealed).write_bytes(co.compress(gotar.build(members)) + co.flush())

    code, report = verify(sealed, keypair[1])
    assert code == EXIT_OK, report["failures"]
    assert report["verified"] is True and report["checked"] == 330
    assert "tarball differs from the sealed file; checked entry by entry" in report["notes"]
    assert any("recompressed or reordered" in note for note in report["notes"])


def failures_of(report: dict) -> list[tuple[str, str]]:
    return [(f["path"], f["problem"]) for f in report["failures"]]
