"""Fixtures of the attack tests: demo-small sealed with the session key, and Go's lister."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.attacks.golist import TarList, build_tarlist
from tests.attacks.helpers import seal
from tests.conftest import copy_backup


@pytest.fixture
def sealed(tmp_path: Path, keypair: tuple[Path, Path]) -> Path:
    """demo-small (Go-written, 322 tar entries and 8 bucket objects), sealed by the CLI."""
    folder = copy_backup("demo-small", tmp_path)
    seal(folder, keypair[0])
    return folder


@pytest.fixture(scope="session")
def tarlist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TarList]:
    """tests/tools/tarlist, built once per session; the tests that need it skip without Go."""
    root = tmp_path_factory.mktemp("tarlist")
    binary = build_tarlist(root)
    if binary is None:
        pytest.skip("go is not installed (CI installs golang-go)")
    lister = TarList(binary, root)
    yield lister
    lister.close()
