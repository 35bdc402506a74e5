"""`verify --restore FILE`: check the restore an operator is about to create, from its Restore
manifest (YAML as `kubectl get restore -o yaml` prints it, or JSON), using the example
manifests of Velero's documentation (tests/fixtures/restores/SOURCES.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.attacks.helpers import (
    EXIT_NOT_AUTHENTIC,
    EXIT_OK,
    EXIT_USAGE,
    expect_refusal,
    failures,
    run,
    seal,
    verify,
)
from tests.attacks.test_scope import A_CONFIG, DEV_CONFIG, tamper
from tests.conftest import copy_backup

RESTORES = Path(__file__).parent / "fixtures" / "restores"


@pytest.fixture
def mix(tmp_path: Path, keypair) -> Path:
    folder = copy_backup("restore-mix", tmp_path)
    seal(folder, keypair[0])
    return folder


def manifest(tmp_path: Path, name: str, **replace: str) -> Path:
    text = (RESTORES / name).read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    out = tmp_path / name
    out.write_text(text)
    return out


def as_json(path: Path) -> Path:
    out = path.with_suffix(".json")
    out.write_text(json.dumps(yaml.safe_load(path.read_text()), indent=2))
    return out


def test_fine_grained_filters_example(mix: Path, tmp_path: Path, keypair) -> None:
    """The docs' Restore of one namespace with a resource policy: the namespace's restore is
    verified (YAML and JSON alike), the policy is said not to narrow it."""
    yml = manifest(tmp_path, "fine-grained-restore-filters-restore.yaml",
                   **{"my-backup": "restore-mix", "my-namespace": "prod-a"})
    for path in (yml, as_json(yml)):
        code, report = verify(mix, keypair[1], "--restore", path)
        assert code == EXIT_OK, report
        assert report["scope_detail"]["selection"]["include_namespaces"] == ["prod-a"]
        assert report["scope_detail"]["namespaces"] == ["prod-a"]
        assert any("spec.resourcePolicy" in n and "not used to narrow" in n for n in report["notes"])
    tamper(mix, DEV_CONFIG)  # another namespace: outside what this restore reads
    code, report = verify(mix, keypair[1], "--restore", yml)
    assert code == EXIT_OK and report["out_of_scope_failures"] == 2
    tamper(mix, A_CONFIG)
    code, report = verify(mix, keypair[1], "--restore", as_json(yml))
    assert code == EXIT_NOT_AUTHENTIC and (A_CONFIG, "modified") in failures(report)


def test_api_types_reference_example(mix: Path, tmp_path: Path, keypair) -> None:
    """The field reference names a backup and a schedule (Velero refuses it); without the
    schedule it restores every namespace but one, and names every narrowing field unused."""
    both = manifest(tmp_path, "api-types-restore.yaml", **{"a-very-special-backup\n": "restore-mix\n"})
    expect_refusal(EXIT_USAGE, "verify", mix, "--trust", keypair[1], "--restore", both,
                   says=("both a backup and a schedule",))
    one = manifest(tmp_path, "api-types-restore.yaml", **{
        "a-very-special-backup\n": "restore-mix\n",
        "scheduleName: my-scheduled-backup-name": "", "some-namespace": "dev"})
    code, report = verify(mix, keypair[1], "--restore", one)
    assert code == EXIT_OK, report
    selection = report["scope_detail"]["selection"]
    assert selection["exclude_namespaces"] == ["dev"]
    assert selection["exclude_resources"] == ["storageclasses.storage.k8s.io"]
    assert selection["include_cluster_resources"] is None
    unused = next(n for n in report["notes"] if "not used to narrow" in n)
    for field in ("labelSelector", "orLabelSelectors", "namespaceMapping", "resourceModifier",
                  "restorePVs", "existingResourcePolicy", "hooks", "restoreStatus"):
        assert f"spec.{field}" in unused
    tamper(mix, DEV_CONFIG)
    code, report = verify(mix, keypair[1], "--restore", one)
    assert code == EXIT_OK and report["out_of_scope_failures"] == 2


def test_cli_printed_restore(mix: Path, tmp_path: Path, keypair) -> None:
    """The shape `velero restore create ... -o yaml` prints (creationTimestamp null, empty
    hooks and uploaderConfig, a status)."""
    path = manifest(tmp_path, "cli-restore-create.yaml", **{
        "backupName: B": "backupName: restore-mix", "- a\n": "- prod-a\n", "- b\n": "- dev\n"})
    human = run("verify", mix, "--trust", keypair[1], "--restore", path)
    assert human.code == EXIT_OK
    assert "include-namespaces prod-a,dev" in human.out.splitlines()[0]
    assert "namespaces selected: 2 (dev, prod-a)" in human.out
    assert "not used to narrow" not in human.out  # hooks: {} narrows nothing and is not named


def test_a_list_of_one_restore(mix: Path, tmp_path: Path, keypair) -> None:
    doc = yaml.safe_load(manifest(tmp_path, "fine-grained-restore-filters-restore.yaml",
                                  **{"my-backup": "restore-mix"}).read_text())
    one = tmp_path / "list.json"
    one.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [doc]}))
    assert verify(mix, keypair[1], "--restore", one)[0] == EXIT_OK
    two = tmp_path / "two.json"
    two.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [doc, doc]}))
    expect_refusal(EXIT_USAGE, "verify", mix, "--trust", keypair[1], "--restore", two,
                   says=("exactly one Restore",))


@pytest.mark.parametrize("name,replace,says", [
    ("fine-grained-restore-filters-restore.yaml", {}, "is of backup 'my-backup', not 'restore-mix'"),
    ("restore-reference-restore-status.yaml", {}, "has no spec.backupName"),
    ("fine-grained-restore-filters-restore.yaml", {"backupName: my-backup": "scheduleName: daily"},
     "names schedule 'daily'"),
    ("fine-grained-restore-filters-restore.yaml", {"kind: Restore": "kind: Backup"},
     "not a Velero Restore object"),
    ("fine-grained-restore-filters-restore.yaml", {"spec:": "spec: [", "my-backup": "restore-mix"},
     "not valid YAML or JSON"),
    ("fine-grained-restore-filters-restore.yaml",
     {"my-backup": "restore-mix", "- my-namespace": "- ''"}, "an empty name selects nothing"),
    ("fine-grained-restore-filters-restore.yaml",
     {"my-backup": "restore-mix", "includedNamespaces:": "includedNamespaces: 3\n  x:"},
     "spec.includedNamespaces is not a list of strings"),
])
def test_manifests_that_name_no_restore_of_this_backup(mix: Path, tmp_path: Path, keypair, name,
                                                        replace, says) -> None:
    path = manifest(tmp_path, name, **replace)
    expect_refusal(EXIT_USAGE, "verify", mix, "--trust", keypair[1], "--restore", path, says=(says,))


def test_restore_with_other_selection_flags_is_a_usage_error(mix: Path, tmp_path: Path, keypair) -> None:
    path = manifest(tmp_path, "fine-grained-restore-filters-restore.yaml", **{"my-backup": "restore-mix"})
    expect_refusal(EXIT_USAGE, "verify", mix, "--trust", keypair[1], "--restore", path,
                   "--namespace", "dev", says=("--restore takes its selection",))


def test_restore_manifest_that_is_a_fifo_is_refused_at_once(mix: Path, tmp_path: Path, keypair) -> None:
    """A FIFO given as --restore is refused with one line, never waited on."""
    import os

    fifo = tmp_path / "restore.yaml"
    os.mkfifo(fifo)
    expect_refusal(3, "verify", mix, "--trust", keypair[1], "--restore", fifo,
                   says=("restore.yaml", "not a regular file"))
