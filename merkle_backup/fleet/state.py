"""Incremental audits (``audit --state FILE``): skip a backup whose every object is unchanged since
a previous run verified it, and re-read every backup at least every ``--recheck-after``.

What "unchanged" means (``fingerprints``), taken *before* a backup is verified, so a change
during the verification makes the next run's fingerprint differ (it is then re-read):

* S3: for every object of ``backups/NAME/`` (tarball, seal, ``velero-backup.json``, every
  sidecar: all are sealed), its key, size, ETag and LastModified, from one listing of the
  location. The ETag is computed by the store from the bytes it holds (MD5 of a single-part
  object; MD5 of the parts' MD5s; opaque but new per write under SSE-KMS/SSE-C) and
  LastModified is set by the store at every write: a writer of the bucket cannot put other
  bytes under the same pair without a second-preimage of MD5 *and* the store's clock. An
  object added to or deleted from the folder changes the set.
* A local folder: for every file of ``backups/NAME/``, its name, size, mtime, ctime, inode and
  device. ``ctime`` cannot be set by a writer (``touch -d`` / ``utime`` set mtime; the kernel
  sets ctime to now at any write, rename or chmod), and a replaced file has a new inode. No
  file is read: a digest would cost as much as the verification's own whole-file hash.
  Not safe against root changing the clock, or a raw block device edit (out of the threat
  model: such an attacker owns the auditor's machine).

The state file is the auditor's own, never the bucket's: kept beside the auditor, written
atomically (temporary file, fsync, rename). One that cannot be read or parsed is an error
(exit 3: fix or delete it, or run with ``--full``), never a reason to skip. A state recorded for
another location or other trusted keys is ignored (every backup re-read). A record is only used
while ``now - verified_at < --recheck-after``; one dated in the future counts as expired.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from merkle_backup.errors import CannotCheck, StorageError, UsageError
from merkle_backup.formats.strict import loads_json
from merkle_backup.velero import BACKUPS_FOLDER

STATE_FORMAT = "merkle-backup-audit-state/1"
MAX_STATE_BYTES = 512 * 2**20
DEFAULT_RECHECK_AFTER = "7d"
MAX_DURATION = 100 * 365 * 86400.0
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+)([smhdw])")


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``12h``, ``7d``, ``2w``, combined (``1d12h``), or plain seconds."""
    text = text.strip()
    if re.fullmatch(r"\d{1,12}", text):
        seconds = float(text)
    elif text and re.fullmatch(r"(\d{1,12}[smhdw]){1,5}", text):
        seconds = float(sum(int(n) * _UNITS[u] for n, u in _DURATION.findall(text)))
    else:
        raise UsageError(f"{text!r} is not a duration (e.g. 12h, 7d, 1d12h, or seconds)")
    if not 0 < seconds <= MAX_DURATION:  # never a date arithmetic overflow later (T74)
        raise UsageError(f"{text!r}: a duration must be more than 0 and at most 100 years")
    return seconds


# -- fingerprints --------------------------------------------------------------------------------


def fingerprints(location: Any, names: Sequence[str]) -> dict[str, str]:
    """name -> a canonical string of what every object of the backup folder is now."""
    from merkle_backup.storage.local import LocalBucket

    wanted = set(names)
    if isinstance(location, LocalBucket):
        return {n: _local_fingerprint(location.backups / n) for n in sorted(wanted)}
    store = getattr(location, "store", None)
    if store is None:  # pragma: no cover - every location is one of the two
        raise CannotCheck(f"{location.describe()}: cannot fingerprint this kind of location")
    return _s3_fingerprints(store, location.prefix, wanted)


def _local_fingerprint(folder: Path) -> str:
    entries = []
    try:
        for p in sorted(folder.iterdir(), key=lambda p: p.name):
            st = p.lstat()
            entries.append([p.name, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                            st.st_ino, st.st_dev])
    except OSError as e:
        raise StorageError(f"cannot list {folder}: {e.strerror or e}") from e
    return json.dumps(["local", entries], separators=(",", ":"))


def _s3_fingerprints(store: Any, prefix: str, wanted: set[str]) -> dict[str, str]:
    base = f"{prefix}/{BACKUPS_FOLDER}/" if prefix else f"{BACKUPS_FOLDER}/"
    found: dict[str, list[Any]] = {n: [] for n in wanted}
    try:
        paginator = store.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=store.bucket, Prefix=base):
            for item in page.get("Contents", ()):
                name, _, rest = item["Key"][len(base):].partition("/")
                if name in found:
                    modified = item.get("LastModified")
                    found[name].append([rest, item.get("Size", 0), item.get("ETag", ""),
                                        modified.isoformat() if modified else ""])
    except Exception as e:
        raise store._error(e, "list", store.url(base)) from e
    return {n: json.dumps(["s3", sorted(v)], separators=(",", ":")) for n, v in found.items()}


# -- the state file ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    fingerprint: str
    verified_at: datetime  # the last time every byte was read and verified
    detail: str
    uid: str | None
    root: str | None
    tarball_sha256: str | None = None
    seal_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "verified_at": _iso(self.verified_at),
                "detail": self.detail, "uid": self.uid, "root": self.root,
                "tarball_sha256": self.tarball_sha256, "seal_sha256": self.seal_sha256}


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: Any) -> datetime:
    if not isinstance(text, str) or not text.endswith("Z"):
        raise ValueError(f"{text!r} is not a UTC time")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


@dataclass
class State:
    location: str
    key_ids: tuple[str, ...]
    records: dict[str, Record]
    note: str = ""  # why an existing state was not used

    def usable(
        self, name: str, fingerprint: str, now: datetime, recheck_after: float
    ) -> Record | None:
        record = self.records.get(name)
        if record is None or record.fingerprint != fingerprint:
            return None
        age = (now - record.verified_at).total_seconds()
        if age < 0 or age >= recheck_after:
            return None
        return record

    def encode(self) -> bytes:
        obj = {
            "format": STATE_FORMAT,
            "location": self.location,
            "trusted_key_ids": list(self.key_ids),
            "backups": {n: r.to_json() for n, r in sorted(self.records.items())},
        }
        return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()


def load_state(path: Path, location: str, key_ids: Sequence[str]) -> State:
    """The state in ``path`` for this location and these keys; an empty one if there is no
    file yet, or (with a note) if it was recorded for another location or other keys."""
    keys = tuple(sorted(key_ids))
    from merkle_backup.storage.files import read_if_present

    # A file the user named: a link is followed, but never a FIFO or device (T72).
    data = read_if_present(path, MAX_STATE_BYTES, follow=True, what="state file")
    if data is None:
        return State(location, keys, {}, f"no state in {path} yet: every backup is read")
    try:
        obj = loads_json(data)
        if not isinstance(obj, dict) or obj.get("format") != STATE_FORMAT:
            raise ValueError(f"format is not {STATE_FORMAT}")
        records = {}
        backups = obj["backups"]
        if not isinstance(backups, dict):
            raise TypeError("backups is not a map")
        for name, r in backups.items():
            if not isinstance(r.get("fingerprint"), str):
                raise TypeError(f"{name}: no fingerprint")
            records[name] = Record(r["fingerprint"], _parse_time(r["verified_at"]),
                                   str(r.get("detail", "")), r.get("uid"), r.get("root"),
                                   r.get("tarball_sha256"), r.get("seal_sha256"))
        stored_location = obj["location"]
        stored_keys = tuple(sorted(obj["trusted_key_ids"]))
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
        raise CannotCheck(
            f"state file {path} is unreadable ({e}): delete it or run with --full"
        ) from e
    if stored_location != location:
        return State(location, keys, {}, f"state file {path} is for {stored_location}: ignored, "
                     "every backup is read")
    if stored_keys != keys:
        return State(location, keys, {}, f"state file {path} was recorded with other trusted "
                     "keys: ignored, every backup is read")
    return State(location, keys, records)


def save_state(path: Path, state: State) -> None:
    from merkle_backup.storage.local import write_atomic

    write_atomic(Path(path), state.encode(), mode=0o600)
