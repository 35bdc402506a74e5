"""T20 of docs/threat-model.md: a namespace-scoped verify before a selective restore, and the
cluster-scoped items such a restore can pull in (the PersistentVolume bound to a claim of the
namespace is restored as an "additional item" unless includeClusterResources=false)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.attacks import gotar
from tests.attacks.helpers import EXIT_OK, NS_A, expect_not_authentic, run, tarball, verify

PV = "resources/persistentvolumes/cluster/pv0001.json"


def test_t20_cluster_scoped_item_outside_a_namespace_scope(sealed: Path, keypair) -> None:
    """T20: the PersistentVolume's NFS server pointed at the attacker's. `verify --namespace`
    alone covers the namespace, not cluster-scoped items: exit 0, with the problem counted
    (and said) as outside the scope. With --include-cluster-resources (the README's advice
    before a selective restore) it is named: exit 1."""
    members = gotar.load(tarball(sealed))
    i = gotar.index_of(members, PV)
    pv = json.loads(members[i].data)
    pv["spec"]["nfs"] = {"path": "/", "server": "attacker.example.com"}
    data = json.dumps(pv, separators=(",", ":"), sort_keys=True).encode()
    members[i] = members[i].with_data(data)
    gotar.store(tarball(sealed), members)

    code, report = verify(sealed, keypair[1], "--namespace", NS_A)
    assert code == EXIT_OK and report["out_of_scope_failures"] == 1
    human = run("verify", sealed, "--trust", keypair[1], "--namespace", NS_A)
    assert "1 problem(s) outside the chosen scope (not counted)" in human.out
    expect_not_authentic(sealed, keypair[1], (PV, "modified"),
                         extra=("--namespace", NS_A, "--include-cluster-resources"))
