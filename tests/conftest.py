"""Shared fixtures: copies of the Go-written Velero backups and real Ed25519 keys."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "bucket" / "backups"
VECTORS = Path(__file__).parent / "vectors"


# pytest puts a test's id in PYTEST_CURRENT_TEST, which every subprocess a test starts inherits;
# Linux refuses an exec whose one environment string passes 128 KiB (E2BIG), and a 200 KB
# parameter used as its own id did exactly that in CI. Ids stay short: ``short_id`` for values.
MAX_NODEID = 300


def short_id(value: object) -> str:
    """A parameter's id: its repr, or the start of it and its length when that is long."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}...[{len(text)} chars]"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    long = [item.nodeid[:120] for item in items if len(item.nodeid) > MAX_NODEID]
    if long:
        raise pytest.UsageError(f"test ids longer than {MAX_NODEID} characters (use ids=): "
                                + "; ".join(long))


def copy_backup(name: str, dest: Path) -> Path:
    """A writable copy of fixture backup ``name`` in Velero's bucket layout under ``dest``."""
    folder = dest / "bucket" / "backups" / name
    shutil.copytree(FIXTURES / name, folder)
    for p in folder.iterdir():
        p.chmod(0o644)
    return folder


@pytest.fixture
def backup(tmp_path: Path) -> Path:
    """demo-small: 322 tar entries (152 items, PAX long names), written by Go's archive/tar."""
    return copy_backup("demo-small", tmp_path)


@pytest.fixture
def backup_v153(tmp_path: Path) -> Path:
    """demo-v153: Velero 1.5.3 entry order."""
    return copy_backup("demo-v153", tmp_path)


@pytest.fixture(scope="session")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from merkle_backup.signing import generate_keypair

    return generate_keypair(tmp_path_factory.mktemp("keys") / "signer.key")


@pytest.fixture(scope="session")
def other_keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from merkle_backup.signing import generate_keypair

    return generate_keypair(tmp_path_factory.mktemp("keys") / "other.key")


@contextmanager
def tiny_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (a full disk on demand); skips unless root."""
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture(scope="module", params=["native", "pure"])
def engine_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs a test module on both per-entry engines (merkle_backup/archive/engine.py): the
    native fast path, and the pure-Python reference. Module-scoped (so hypothesis tests may use
    it): pytest runs the module once per engine."""
    from merkle_backup.archive import engine

    native = engine.native
    if request.param == "native" and native is None:
        pytest.skip("the native engine is not built here (no C compiler, or MERKLE_BACKUP_PURE=1)")
    if request.param == "pure":
        engine.native = None
    try:
        yield request.param
    finally:
        engine.native = native
