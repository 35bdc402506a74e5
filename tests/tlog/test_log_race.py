"""Races of the log's reader and appender, interleaved by hand (no threads, no timing)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from merkle_backup.errors import NotAuthentic
from merkle_backup.signing import generate_keypair, load_private_key, load_public_key
from merkle_backup.tlog import tiles
from merkle_backup.tlog.log import Log, LogState
from merkle_backup.tlog.store import LocalLogStore
from tests.tlog.helpers import filler_seal

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


@pytest.fixture
def signer(tmp_path):
    key, pub = generate_keypair(tmp_path / "k")
    return load_private_key(key), load_public_key(pub)


def entry(private, pub, i: int) -> bytes:
    return filler_seal(private, pub, i)


def test_an_older_head_read_before_the_cache_moved_is_not_a_rollback(tmp_path, signer):
    """seal-all --jobs 2 (the flaky test_two_seal_all_processes_at_once): thread X reads the
    head (n entries), thread Y's append then reads entries at a newer head (another process
    appended), then X reads the entries of its head. They are a prefix of what the Log object
    holds: X must get them, not 'log shrank while it was read' (exit 3)."""
    private, pub = signer
    store = LocalLogStore(tmp_path / "log")
    writer = Log(store, [pub], LogState(tmp_path / "w.json"))
    writer.append(private, [entry(private, pub, 0), entry(private, pub, 1)])
    log = Log(store, [pub], LogState(tmp_path / "r.json"))
    old = log.head()                                          # thread X
    writer.append(private, [entry(private, pub, 2)])          # the other process
    assert len(log.entries(log.head())) == 3                  # thread Y
    got = log.entries(old)                                    # thread X again
    assert [e.backup for e in got] == ["backup-0", "backup-1"]


def test_an_older_head_that_is_not_a_prefix_is_a_fork(tmp_path, signer):
    private, pub = signer
    a, b = LocalLogStore(tmp_path / "a"), LocalLogStore(tmp_path / "b")
    la = Log(a, [pub], None)
    la.append(private, [entry(private, pub, i) for i in range(3)])
    lb = Log(b, [pub], None)
    lb.append(private, [entry(private, pub, 9), entry(private, pub, 8)])
    other = lb.head()
    la.entries(la.head())
    with pytest.raises(NotAuthentic, match="forked|do not hash"):
        la.entries(other)


def test_two_logs_interleave_every_append_step(tmp_path, signer):
    """Two writers read the same head; A claims, B finds A's claim and finishes it, A's swap
    loses and A sees its own claim done; then B appends its own. Every entry once, in order."""
    private, pub = signer
    store = LocalLogStore(tmp_path / "log")
    a = Log(store, [pub], LogState(tmp_path / "a.json"))
    b = Log(store, [pub], LogState(tmp_path / "b.json"))
    a.append(private, [entry(private, pub, 0)])
    steps: list[str] = []

    def a_hook(what: str) -> None:
        steps.append(f"a:{what}")
        if what == "pending/1":  # A has claimed slot 1: B now runs its whole append
            b.append(private, [entry(private, pub, 2)], crash=lambda w: steps.append(f"b:{w}"))

    index, head = a.append(private, [entry(private, pub, 1)], crash=a_hook)
    assert index == 1
    final = Log(store, [pub], None)
    names = [e.backup for e in final.entries(final.head())]
    assert names == ["backup-0", "backup-1", "backup-2"], steps
    assert "b:pending/2" in steps


def test_appends_write_o_log_n_objects(tmp_path, signer):
    """Objects created by one append of one entry, at several sizes: at most 2 per tile level
    (entry bundle + one hash tile per level, plus the claim and the head)."""
    private, pub = signer

    class Counting(LocalLogStore):
        writes = 0

        def create(self, name, data):
            Counting.writes += 1
            return super().create(name, data)

        def swap_head(self, token, data):
            Counting.writes += 1
            return super().swap_head(token, data)

    store = Counting(tmp_path / "log")
    log = Log(store, [pub], None)
    size, same = 0, entry(private, pub, 7)  # a log may hold equal entries: no signing per entry
    for target in (1, 2, 255, 256, 257, 512, 513, 4097):
        batch = [same] * (target - 1 - size)
        for lo in range(0, len(batch), 4096):
            log.append(private, batch[lo:lo + 4096])
        size = max(size, target - 1)
        Counting.writes = 0
        log.append(private, [same])
        size += 1
        levels = 1
        while size >> (tiles.TILE_HEIGHT * levels):
            levels += 1
        # claim + head + entry bundle(s) + hash tiles, at most 2 of each kind per level
        assert Counting.writes <= 3 + 2 * levels, (size, Counting.writes)
