"""T16-T17 of docs/threat-model.md, defence in depth: archives that say different things where
Velero's restore looks, so that what is restored depends on the restoring server's flags.

* T16: an item's classic copy and its -preferredversion copy differ (a restore reads the
  classic copy by default, the version directory with EnableAPIGroupVersions).
* T17: a manifest's metadata.namespace or metadata.name disagrees with its path (restore
  filters on the directory name and again on the JSON's metadata).

`seal` refuses both (exit 3, naming the path) unless --force; with --force it seals and prints a
warning per entry; `verify` of such a sealed backup is authentic (exit 0) and reports each one
as a warning. These are the sealer's own checks: they are not tampering after sealing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.attacks import gotar
from tests.attacks.helpers import (
    EXIT_CANNOT_CHECK,
    EXIT_OK,
    NS_A,
    NS_B,
    expect_refusal,
    run,
    seal,
    seal_path,
    tarball,
    verify,
)
from tests.conftest import copy_backup
from tests.tamper import add_sidecar

CLASSIC = f"resources/deployments.apps/namespaces/{NS_A}/frontend.json"
PREFERRED = f"resources/deployments.apps/v1-preferredversion/namespaces/{NS_A}/frontend.json"
PV = "resources/persistentvolumes/cluster/pv0001-f95fe8.json"
PV_PREFERRED = "resources/persistentvolumes/v1-preferredversion/cluster/pv0001-f95fe8.json"


def _edit_json(data: bytes, change) -> bytes:
    obj = json.loads(data)
    change(obj)
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def _build(tmp_path: Path, edits: dict[str, bytes]) -> Path:
    folder = copy_backup("demo-small", tmp_path)
    members = gotar.load(tarball(folder))
    for path, data in edits.items():
        i = gotar.index_of(members, path)
        members[i] = members[i].with_data(data)
    gotar.store(tarball(folder), members)
    return folder


def _fixture_data(tmp_path: Path, path: str) -> bytes:
    folder = copy_backup("demo-small", tmp_path / "original")
    return gotar.find(gotar.load(tarball(folder)), path).data


def _seal_refused_then_forced(folder: Path, keypair, path: str, problem: str) -> None:
    expect_refusal(EXIT_CANNOT_CHECK, "seal", folder, "--key", keypair[0],
                   says=(path, problem, "refusing to seal without --force"))
    assert not seal_path(folder).exists()
    forced = seal(folder, keypair[0], "--force")
    assert f"warning: sealed despite: {path}: {problem}" in forced.err


def test_t16_classic_and_preferred_copies_differ(tmp_path: Path, keypair) -> None:
    """T16: the -preferredversion copy of a Deployment carries a sidecar, the classic copy
    does not."""
    original = _fixture_data(tmp_path, PREFERRED)
    folder = _build(tmp_path, {PREFERRED: add_sidecar(original)})
    problem = f"differs from its classic copy {CLASSIC}"
    _seal_refused_then_forced(folder, keypair, PREFERRED, problem)

    code, report = verify(folder, keypair[1])
    assert code == EXIT_OK and report["failures"] == []
    assert {"path": PREFERRED, "problem": problem} in report["warnings"]
    human = run("verify", folder, "--trust", keypair[1], "--namespace", NS_A)
    assert human.code == EXIT_OK and f"warning: {PREFERRED}: {problem}" in human.out


def _disagreeing(tmp_path: Path, kind: str) -> tuple[Path, str, str]:
    """Both copies of an item edited alike (so T16 does not fire), their metadata disagreeing
    with their path in one way."""
    if kind == "namespace":
        path, twin = CLASSIC, PREFERRED
        change = lambda o: o["metadata"].__setitem__("namespace", NS_B)
        problem = f"metadata.namespace is '{NS_B}', the path says namespace '{NS_A}'"
    elif kind == "name":
        path, twin = CLASSIC, PREFERRED
        change = lambda o: o["metadata"].__setitem__("name", "other")
        problem = "metadata.name is 'other', the path says 'frontend'"
    else:  # a cluster-scoped PersistentVolume claiming a namespace
        path, twin = PV, PV_PREFERRED
        change = lambda o: o["metadata"].__setitem__("namespace", NS_A)
        problem = f"metadata.namespace is '{NS_A}', the path says a cluster-scoped resource"
    data = _edit_json(_fixture_data(tmp_path, path), change)
    return _build(tmp_path, {path: data, twin: data}), path, problem


KINDS = ["namespace", "name", "cluster-scoped-with-namespace"]


@pytest.mark.parametrize("kind", KINDS)
def test_t17_manifest_metadata_disagrees_with_its_path(tmp_path: Path, keypair, kind: str) -> None:
    """T17: seal refuses, then seals with --force and warns; a verify that reads the entries
    (here: the archive recompressed, so verify checks entry by entry) warns too."""
    folder, path, problem = _disagreeing(tmp_path, kind)
    _seal_refused_then_forced(folder, keypair, path, problem)
    before = tarball(folder).read_bytes()
    gotar.store(tarball(folder), gotar.load(tarball(folder)), level=1)  # same entries
    assert tarball(folder).read_bytes() != before
    code, report = verify(folder, keypair[1])
    assert code == EXIT_OK and report["failures"] == []
    assert {"path": path, "problem": problem} in report["warnings"]


@pytest.mark.parametrize("kind", KINDS)
def test_t17_verify_warns_on_an_untouched_backup(tmp_path: Path, keypair, kind: str) -> None:
    """T17 on the unchanged, forced-sealed archive: verify must report the warning too (the
    signed checkpoint counts what --force let through, so the fast path knows to read on)."""
    folder, path, problem = _disagreeing(tmp_path, kind)
    seal(folder, keypair[0], "--force")
    code, report = verify(folder, keypair[1])
    assert code == EXIT_OK
    assert {"path": path, "problem": problem} in report["warnings"]
