"""docs/format.md §12.4, docs/threat-model.md T69: a claim (``pending/<n>``) is rolled forward
only when the log key signed it for this log, this slot and these bytes, and its entries follow
the name rules. Claims that break a rule can only come from a holder of the key (the CLI test,
tests/tlog/test_log_attacks.py::test_t69_a_claim_without_the_log_key_is_never_rolled_forward,
covers the claims anyone else can write); here each rule is broken once through the library."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from merkle_backup.signing import generate_keypair, load_private_key, public_key_of
from merkle_backup.tlog.entries import expiry_entry, tombstone_entry
from merkle_backup.tlog.log import ClaimRefused, Log, encode_claim
from merkle_backup.tlog.note import origin_for
from merkle_backup.tlog.store import LocalLogStore
from tests.tlog.helpers import filler_seal

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)


@pytest.fixture
def logged(tmp_path):
    """A log of 2 entries: backup-0's seal (at NOW) and backup-1's."""
    private = load_private_key(generate_keypair(tmp_path / "log.key")[0])
    pub = public_key_of(private)
    store = LocalLogStore(tmp_path / "log")
    log = Log(store, [pub], None)
    log.append(private, [filler_seal(private, pub, 0), filler_seal(private, pub, 1)])
    return private, pub, store, log


def _claim_then_append(private, pub, store, log, raws, *, size=2):
    store.create(f"pending/{size}", encode_claim(private, origin_for(pub.raw), size, raws))
    log.append(private, [filler_seal(private, pub, 9)])


def test_a_good_claim_of_another_writer_is_rolled_forward(logged):
    private, pub, store, log = logged
    later = filler_seal(private, pub, 0, created=NOW + timedelta(hours=1))
    _claim_then_append(private, pub, store, log, [later])
    names = [e.backup for e in log.entries(log.head())]
    assert names == ["backup-0", "backup-1", "backup-0", "backup-9"]


@pytest.mark.parametrize("case", ["logged", "twice", "older", "same-second", "tombstone-other",
                                  "tombstone-twice", "expiry-other"])
def test_a_claim_breaking_a_name_rule_is_refused(logged, case):
    private, pub, store, log = logged
    e0 = log.entries(log.head())[0]
    raws = {
        "logged": [filler_seal(private, pub, 0)],
        "twice": [filler_seal(private, pub, 5)] * 2,
        "older": [filler_seal(private, pub, 0, created=NOW - timedelta(days=1))],
        "same-second": [filler_seal(private, pub, 0, created=NOW).replace(b"uid-0", b"uid-x")],
        "tombstone-other": [tombstone_entry(private, "backup-0", "uid-0", b"\x07" * 32, NOW,
                                            pub.key_id)],
        "tombstone-twice": [tombstone_entry(private, "backup-0", e0.uid, e0.root, NOW, pub.key_id),
                            tombstone_entry(private, "backup-0", e0.uid, e0.root,
                                            NOW + timedelta(seconds=1), pub.key_id)],
        "expiry-other": [expiry_entry(private, "backup-7", "uid-7", bytes(32), NOW, pub.key_id)],
    }[case]
    if case == "same-second":  # the same created second, another uid: re-signed
        from merkle_backup.core.checkpoint import parse_checkpoint
        from merkle_backup.tlog.entries import seal_entry
        from merkle_backup.tlog.note import parse_note

        body = parse_note(raws[0]).text
        assert parse_checkpoint(body).uid == "uid-x"
        raws = [seal_entry(body, private.sign(body), pub.raw)]
    with pytest.raises(ClaimRefused) as caught:
        _claim_then_append(private, pub, store, log, raws)
    assert "pending/2" in str(caught.value) and "nothing was appended" in str(caught.value)
    assert log.head().size == 2


def test_a_signed_claim_for_another_slot_or_other_bytes_is_refused(logged):
    private, pub, store, log = logged
    raw = filler_seal(private, pub, 5)
    claim = encode_claim(private, origin_for(pub.raw), 1, [raw])  # signed for slot 1
    store.create("pending/2", claim)
    with pytest.raises(ClaimRefused, match="its signed slot or entries are not these"):
        log.append(private, [filler_seal(private, pub, 9)])
    (store.root / "pending/2").unlink()  # replaced by one whose entries were swapped
    good = encode_claim(private, origin_for(pub.raw), 2, [raw])
    swapped = good[: len(good) - len(raw)] + filler_seal(private, pub, 6)
    store.create("pending/2", swapped)
    with pytest.raises(ClaimRefused, match="its signed slot or entries are not these"):
        log.append(private, [filler_seal(private, pub, 9)])
    assert log.head().size == 2
