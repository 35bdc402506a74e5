"""Reading and appending to the log (docs/format.md §12.4-12.6).

Reading: the head (``checkpoint``) must be signed by a trusted key whose origin it names, and
consistent with the last head this user trusted (``LogState``): a smaller tree is a rollback, a
tree that does not extend it (consistency proof from the tiles) a fork; both are NotAuthentic.
Entries are authenticated by recomputing the signed root from them.

Appending (safe under racing writers, atomic under crashes): read the head (size n); claim the
slot with a conditional create of ``pending/<n>`` holding the entries (the claim decides what
follows entry n-1: whoever finds a claim rolls it forward instead); write the entry bundles and
hash tiles it implies with conditional creates (identical bytes from another writer are fine);
then compare-and-swap the head. The head is always written last, after every tile it names, so
a crash leaves the old head with its tiles, plus a claim the next writer finishes.

A claim is signed by the log's key over the log's origin, its slot and its entries' bytes
(docs/format.md §12.4): every entry is public (a seal's entry is its checkpoint and signature),
so an unsigned claim would let anyone who can write the store have the next honest append log an
old or outside seal. Before another writer's claim is rolled forward its entries must follow
the name rules of ``_check_claim`` (docs/threat-model.md T69); our own entries
are checked by the caller's ``guard`` (seal-all: the name not logged meanwhile; forget: the
name's seal is still its latest).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from merkle_backup.core.tree import TreeHasher, verify_consistency
from merkle_backup.errors import (
    CannotCheck,
    FormatError,
    NotAuthentic,
    ProofError,
    StorageError,
    UsageError,
)
from merkle_backup.formats.strict import loads_json
from merkle_backup.signing import PublicKey, SigningKey, public_key_of
from merkle_backup.tlog import note as notes
from merkle_backup.tlog import tiles
from merkle_backup.tlog.entries import EXPIRY, SEAL, TOMBSTONE, Entry, parse_entry
from merkle_backup.tlog.store import Conflict, LocalLogStore, S3LogStore

SHA256 = TreeHasher("sha256", lambda b: hashlib.sha256(b).digest())
MAX_ATTEMPTS = 64
MAX_LOG_STATE_BYTES = 16 * 2**20  # a head per log origin
CLAIM_CONTEXT = "merkle-backup/claim/v1"


def claim_body(origin: str, size: int, raws: Sequence[bytes]) -> bytes:
    """docs/format.md §12.4: what the log key signs in ``pending/<size>``."""
    digest = hashlib.sha256(tiles.encode_bundle(raws)).hexdigest()
    return (f"{CLAIM_CONTEXT}\norigin {origin}\nsize {size}\nentries {len(raws)}\n"
            f"sha256 {digest}\n").encode()


def encode_claim(private: SigningKey, origin: str, size: int,
                 raws: Sequence[bytes]) -> bytes:
    """``pending/<size>``: a bundle of the signed claim note, then the entries."""
    body = claim_body(origin, size, raws)
    note = notes.Note(body, (notes.sign_line(private, origin, body),)).encode()
    return tiles.encode_bundle([note, *raws])


def _push(stack: list[tuple[int, bytes]], leaves: Sequence[bytes]) -> None:
    """Extend a compact range (the complete subtrees, largest first) by ``leaves``."""
    for h in leaves:
        node, height = h, 0
        while stack and stack[-1][0] == height:
            node = tiles.node_hash(stack.pop()[1], node)
            height += 1
        stack.append((height, node))


def _stack_root(stack: Sequence[tuple[int, bytes]]) -> bytes:
    if not stack:
        return tiles.empty_root()
    node = stack[-1][1]
    for _, h in reversed(stack[:-1]):
        node = tiles.node_hash(h, node)
    return node


class _Prefix(Sequence[Any]):
    """The first ``size`` items of a list that only grows: a view, not a copy."""

    def __init__(self, items: list[Any], size: int) -> None:
        self._items, self._size = items, size

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self._items[j] for j in range(*i.indices(self._size))]
        if i < 0:
            i += self._size
        if not 0 <= i < self._size:
            raise IndexError(i)
        return self._items[i]


class LogRollback(NotAuthentic):
    """The log is smaller than, or does not extend, the last log head this user trusted."""


class ClaimRefused(NotAuthentic):
    """A claim (``pending/<n>``) that is not signed by the log's key, or whose entries break the
    name rules: nothing of it is written."""


@dataclass(frozen=True)
class Head:
    checkpoint: notes.LogCheckpoint
    note: bytes          # the signed note, as stored
    token: Any           # for compare-and-swap

    @property
    def size(self) -> int:
        return self.checkpoint.size

    @property
    def root(self) -> bytes:
        return self.checkpoint.root


def default_state_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(base) / "merkle-backup" / "log-state.json"


class LogState:
    """The last log head each origin was trusted at: {origin: {size, root, checkpoint}}."""

    def __init__(self, path: Path | None) -> None:
        self.path = Path(path) if path else default_state_path()
        self._lock = threading.Lock()

    def load(self) -> dict[str, dict[str, Any]]:
        from merkle_backup.storage.files import read_if_present

        # A file the user named: a link is followed, but never a FIFO or device (T72).
        data = read_if_present(self.path, MAX_LOG_STATE_BYTES, follow=True, error=CannotCheck,
                               what="log state")
        if data is None:
            return {}
        try:
            obj = loads_json(data)
            logs: dict[str, dict[str, Any]] = obj["logs"]
            for origin, v in logs.items():
                if not (isinstance(v["size"], int) and len(base64.b64decode(v["root"])) == 32):
                    raise ValueError(origin)
            return logs
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise CannotCheck(f"log state {self.path} is malformed") from e

    def get(self, origin: str) -> tuple[int, bytes] | None:
        v = self.load().get(origin)
        return None if v is None else (v["size"], base64.b64decode(v["root"]))

    def save(self, head: Head) -> None:
        from merkle_backup.storage.local import write_atomic

        with self._lock:
            logs = self.load()
            old = logs.get(head.checkpoint.origin)
            if old is not None and old["size"] > head.size:
                return  # never move the state back (a concurrent, newer check won)
            logs[head.checkpoint.origin] = {
                "size": head.size, "root": base64.b64encode(head.root).decode(),
                "checkpoint": head.note.decode()}
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise CannotCheck(f"cannot create {self.path.parent}: {e.strerror or e}") from e
            write_atomic(self.path, json.dumps({"version": 1, "logs": logs}, indent=1).encode(),
                         mode=0o600)


def _name_step(names: dict[str, tuple[Entry | None, Entry]], e: Entry) -> None:
    """Index ``e`` into name -> (latest seal, latest seal or tombstone)."""
    if e.kind == SEAL:
        names[e.backup] = (e, e)
    elif e.kind == TOMBSTONE:
        latest = names[e.backup][0] if e.backup in names else None
        names[e.backup] = (latest, e)


def check_size_bound(cp: notes.LogCheckpoint, key: PublicKey | None, where: str) -> None:
    """docs/format.md §6.3: a log key retired at tree size N signs no larger head."""
    if key is not None and key.not_after_size is not None and cp.size > key.not_after_size:
        raise NotAuthentic(f"{where}: the log head of {cp.size} entries is signed by {key.source}, "
                           f"retired after {key.not_after_size} entries (not-after-size)")


@dataclass(frozen=True)
class _Plan:
    writes: list[tuple[str, bytes]]  # (path, bytes), in the order they are created
    new: dict[tuple[int, int, int], list[bytes]]  # the new hash tiles
    size: int
    root: bytes


class Log:
    """One log: its store, the keys trusted to sign its head and entries, the user's state."""

    def __init__(
        self,
        store: LocalLogStore | S3LogStore,
        trusted: Sequence[PublicKey],
        state: LogState | None,
        name: str | None = None,
    ) -> None:
        if not trusted:
            raise CannotCheck("no trusted key for the log")
        if name is not None and not notes.valid_log_name(name):
            raise UsageError(f"--log-name {name!r}: lowercase letters, digits, '-' and '.', at "
                             "most 63")
        self.name = name  # docs/format.md §12.2: part of the origin, so of every head
        self.store = store
        self.trusted = {k.key_id: k.raw for k in trusted}
        self._bounds = {k.raw: k for k in trusted if k.not_after_size is not None}
        self.state = state
        self._lock = threading.RLock()
        self._leaves: list[bytes] = []
        self._entries: list[Entry] = []
        self._tiles: dict[tuple[int, int, int], list[bytes]] = {}
        self._stack: list[tuple[int, bytes]] = []  # complete subtrees of self._leaves
        self._seen: dict[bytes, int] = {}  # leaf hash -> first index, of self._leaves
        # backup name -> (latest seal, latest seal or tombstone), of self._entries
        self._names: dict[str, tuple[Entry | None, Entry]] = {}

    def describe(self) -> str:
        return self.store.describe()

    # -- reading ---------------------------------------------------------------------------

    def _read_tile(self, level: int, index: int, width: int) -> list[bytes]:
        key = (level, index, width)
        if key not in self._tiles:
            path = tiles.tile_path(level, index, width)
            data = self.store.get(path)
            if data is None:
                raise CannotCheck(f"{self.describe()}: log tile {path} is missing")
            self._tiles[key] = tiles.decode_hashes(data, width, f"log tile {path}")
        return self._tiles[key]

    def reader(self, size: int) -> tiles.HashReader:
        return tiles.HashReader(size, self._read_tile)

    def head(self, *, check_state: bool = True) -> Head:
        """The verified head; with ``check_state``, consistent with the user's last one (then
        remembered)."""
        with self._lock:
            data, token = self.store.read_head()
            if data is None:
                cp = None
            else:
                try:
                    cp, _, raw = notes.open_log_checkpoint(data, list(self.trusted.values()),
                                                           self.name)
                except FormatError as e:
                    raise NotAuthentic(
                        f"{self.describe()}: log checkpoint is malformed: {e}"
                    ) from e
                check_size_bound(cp, self._bounds.get(raw), self.describe())
            if data is None or cp is None:
                for raw in self.trusted.values():
                    origin = notes.origin_for(raw, self.name)
                    prior = self.state.get(origin) if (self.state and check_state) else None
                    if prior and prior[0] > 0:
                        raise LogRollback(
                            f"log {self.describe()} rolled back: it has no checkpoint, "
                            f"it had {prior[0]} entries when last trusted"
                        )
                return Head(notes.LogCheckpoint("", 0, tiles.empty_root()), b"", None)
            head = Head(cp, data, token)
            if check_state and self.state is not None:
                self._check_consistent(head)
                self.state.save(head)
            return head

    def _check_consistent(self, head: Head) -> None:
        prior = self.state.get(head.checkpoint.origin) if self.state else None
        if prior is None or prior[0] == 0:
            return
        assert self.state is not None
        size, root = prior
        if head.size < size:
            raise LogRollback(f"log {self.describe()} rolled back: {head.size} entries, it had "
                              f"{size} when last trusted ({self.state.path})")
        if head.size == size:
            if head.root != root:
                raise LogRollback(f"log {self.describe()} forked: another root at size {size}")
            return
        try:
            proof = self.reader(head.size).consistency_proof(size)
            verify_consistency(size1=size, size2=head.size, root1=root, root2=head.root,
                               proof=proof, hasher=SHA256)
        except (ProofError, FormatError) as e:
            raise LogRollback(f"log {self.describe()} forked: size {head.size} does not extend "
                              f"the {size} entries last trusted ({e})") from e

    def entries(self, head: Head) -> Sequence[Entry]:
        """Every entry of ``head``, authenticated by its root (read once, then incrementally:
        only the bundles past what this Log already holds are read and hashed).

        ``head`` may be older than what this Log holds (another thread of this process read a
        newer head meanwhile): its entries are then the prefix the cached leaves hash to its
        root, or the log forked."""
        with self._lock:
            n = len(self._leaves)
            if head.size <= n:
                if (head.size < n and tiles.root_of(self._leaves[: head.size]) != head.root) or \
                        (head.size == n and self._root() != head.root):
                    raise LogRollback(f"log {self.describe()} forked: its root at size {head.size} "
                                      "is not the one of the entries read before")
                return _Prefix(self._entries, head.size)
            raws: list[bytes] = []
            t = n >> tiles.TILE_HEIGHT
            skip = n - (t << tiles.TILE_HEIGHT)
            while (t << tiles.TILE_HEIGHT) < head.size:
                width = tiles.width_at(head.size, 0, t)
                path = tiles.tile_path("entries", t, width)
                data = self.store.get(path)
                if data is None:
                    raise CannotCheck(f"{self.describe()}: log entry bundle {path} is missing")
                bundle = tiles.decode_bundle(data, width, f"log entry bundle {path}")
                raws.extend(bundle[skip:])
                skip = 0
                t += 1
            new = [tiles.leaf_hash(r) for r in raws]
            stack = list(self._stack)
            _push(stack, new)
            if _stack_root(stack) != head.root:
                raise NotAuthentic(
                    f"log {self.describe()}: its entries do not hash to its signed root"
                )
            parsed = [
                parse_entry(r, self.trusted, f"log entry {n + i}") for i, r in enumerate(raws)
            ]
            for i, leaf in enumerate(new):
                self._seen.setdefault(leaf, n + i)
            for e in parsed:
                _name_step(self._names, e)
            self._leaves.extend(new)
            self._stack = stack
            self._entries.extend(parsed)
            return _Prefix(self._entries, head.size)

    def _root(self) -> bytes:
        return _stack_root(self._stack)

    # -- appending -------------------------------------------------------------------------

    def append(self, private: SigningKey, raws: Sequence[bytes],
               guard: Callable[[Sequence[Entry]], None] | None = None,
               crash: Callable[[str], None] | None = None) -> tuple[int, Head]:
        """Append ``raws`` (entries); return the index of the first and the new head.
        ``guard`` sees every entry logged since the last call and may refuse (raise) before the
        slot is claimed. ``crash`` is a test hook called after every object written."""
        me = public_key_of(private)
        if me.key_id not in self.trusted:
            self.trusted[me.key_id] = me.raw
        for r in raws:
            parse_entry(r, self.trusted)  # only entries a verifier will accept
        hook = crash or (lambda _: None)
        with self._lock:
            for _ in range(MAX_ATTEMPTS):
                head = self.head()
                if guard is not None:
                    guard(self.entries(head))
                origin = head.checkpoint.origin if head.size else \
                    notes.origin_for(me.raw, self.name)
                claim = encode_claim(private, origin, head.size, raws)
                # The new head is signed too before anything is written (docs/format.md §6.1):
                # a signer that fails leaves no claim, tile or entry behind.
                plan = self._plan(head, raws)
                signed = (plan, notes.sign_log_checkpoint(private, plan.size, plan.root, self.name))
                slot = f"pending/{head.size}"
                try:
                    self.store.create(slot, claim)
                    hook(slot)
                    mine = True
                except Conflict:
                    mine = False
                if mine:
                    new = self._roll_forward(private, head, raws, hook, signed)
                    if new is not None:
                        if self.state is not None:
                            self.state.save(new)
                        return head.size, new
                    after = self.head()
                    if after.size >= head.size + len(raws) and self._claim_done(head.size, claim):
                        return head.size, after
                    continue
                theirs = self.store.get(slot)
                if theirs is None:
                    continue
                others = self._decode_claim(slot, theirs, head)
                self.entries(head)  # the names the rules need
                self._check_claim(head, others, slot)
                self._roll_forward(private, head, others, hook)
            raise StorageError(
                f"log {self.describe()}: could not append after {MAX_ATTEMPTS} tries"
            )

    def _claim_done(self, size: int, claim: bytes) -> bool:
        return self.store.get(f"pending/{size}") == claim

    def _decode_claim(self, slot: str, data: bytes, head: Head) -> list[bytes]:
        """The entries of another writer's claim, once its note is signed by a trusted log key
        for this log (its origin), this slot and these bytes; ClaimRefused otherwise."""
        items, pos = [], 0
        while pos < len(data):
            if pos + 2 > len(data):
                raise CannotCheck(f"{self.describe()}: {slot} is malformed")
            n = int.from_bytes(data[pos : pos + 2], "big")
            items.append(data[pos + 2 : pos + 2 + n])
            pos += 2 + n
        if pos != len(data) or len(items) < 2:
            raise ClaimRefused(self._unsigned(slot, "not a signed claim"))
        note_raw, raws = items[0], items[1:]
        try:
            note = notes.parse_note(note_raw)
        except FormatError as e:
            raise ClaimRefused(self._unsigned(slot, "not a signed claim")) from e
        lines = note.text.decode("utf-8", "replace").split("\n")
        origin = lines[1][len("origin "):] if len(lines) > 1 and \
            lines[1].startswith("origin ") else ""
        want = head.checkpoint.origin if head.size else None
        signed = any(
            notes.origin_for(raw, self.name) == origin and (want is None or origin == want)
            and notes.verify_ed25519(note, origin, raw) for raw in self.trusted.values()
        )
        if not signed:
            raise ClaimRefused(self._unsigned(slot, "not signed by a key of this log"))
        if note.text != claim_body(origin, head.size, raws):
            raise ClaimRefused(self._unsigned(slot, "its signed slot or entries are not these"))
        for r in raws:
            parse_entry(r, self.trusted, f"{slot}")
        return raws

    def _unsigned(self, slot: str, why: str) -> str:
        return (f"log {self.describe()}: {slot} is {why}: someone without the log's key wrote "
                f"the log store (or a version before claims were signed crashed mid-append); "
                f"nothing was appended. Check the store, then delete {slot}")

    def _check_claim(self, head: Head, raws: Sequence[bytes], what: str) -> None:
        """docs/format.md §12.4: another writer's claim ``raws`` may follow ``head`` only if
        none is logged already, each seal is newer than its name's latest seal, each tombstone
        forgets its name's current seal and each expiry refers to it. ClaimRefused otherwise."""
        if head.size == len(self._leaves):
            seen, names = self._seen, self._names
            logged = seen.get
        else:  # an older head than this Log holds: its prefix, indexed afresh
            names = {}
            for e in self._entries[: head.size]:
                _name_step(names, e)
            prefix = {leaf: i for i, leaf in reversed(list(enumerate(self._leaves[: head.size])))}
            logged = prefix.get
        overlay: dict[str, tuple[Entry | None, Entry]] = {}
        claimed: set[bytes] = set()
        for k, raw in enumerate(raws):
            e = parse_entry(raw, self.trusted, f"{what}, entry {k}")
            leaf = tiles.leaf_hash(raw)
            at = logged(leaf)
            if at is not None or leaf in claimed:
                where = f"log entry {at}" if at is not None else "this claim"
                raise ClaimRefused(f"log {self.describe()}: {what}: the {e.kind} of {e.backup} "
                                   f"is logged already ({where}); nothing was appended")
            claimed.add(leaf)
            latest, last = overlay.get(e.backup) or names.get(e.backup) or (None, None)
            problem = None
            if e.kind == SEAL and latest is not None and e.time <= latest.time:
                problem = (f"a seal of {e.backup} not newer than its latest logged seal "
                           f"({latest.time:%Y-%m-%dT%H:%M:%SZ})")
            elif e.kind in (TOMBSTONE, EXPIRY) and (
                    last is None or last.kind != SEAL or (last.uid, last.root) != (e.uid, e.root)):
                problem = f"a {e.kind} of {e.backup} that is not about its current seal"
            if problem is not None:
                raise ClaimRefused(f"log {self.describe()}: {what}: {problem}; nothing was "
                                   "appended")
            step: dict[str, tuple[Entry | None, Entry]] = {e.backup: (latest, last)} \
                if last is not None else {}
            _name_step(step, e)
            if e.backup in step:
                overlay[e.backup] = step[e.backup]

    def _plan(self, head: Head, raws: Sequence[bytes]) -> _Plan:
        """What ``head`` + ``raws`` needs written, and the new root; nothing is written."""
        n, m = head.size, head.size + len(raws)
        writes: list[tuple[str, bytes]] = []
        first = n >> tiles.TILE_HEIGHT
        carried: list[bytes] = []
        if n % tiles.TILE_WIDTH:
            path = tiles.tile_path("entries", first, n % tiles.TILE_WIDTH)
            data = self.store.get(path)
            if data is None:
                raise CannotCheck(f"{self.describe()}: log entry bundle {path} is missing")
            carried = tiles.decode_bundle(data, n % tiles.TILE_WIDTH, path)
        allraws = carried + list(raws)
        for t in range(first, ((m - 1) >> tiles.TILE_HEIGHT) + 1):
            lo = (t - first) << tiles.TILE_HEIGHT
            width = tiles.width_at(m, 0, t)
            writes.append((tiles.tile_path("entries", t, width),
                           tiles.encode_bundle(allraws[lo : lo + width])))
        leaves = [tiles.leaf_hash(r) for r in raws]
        new = tiles.new_tiles(n, self._read_tile, leaves)
        for (level, index, width), hashes in sorted(new.items()):
            writes.append((tiles.tile_path(level, index, width), tiles.encode_hashes(hashes)))

        def overlay(level: int, index: int, width: int) -> list[bytes]:
            return new[(level, index, width)] if (level, index, width) in new else \
                self._read_tile(level, index, width)

        return _Plan(writes, new, m, tiles.HashReader(m, overlay).root())

    def _roll_forward(self, private: SigningKey, head: Head, raws: Sequence[bytes],
                      hook: Callable[[str], None],
                      signed: tuple[_Plan, bytes] | None = None) -> Head | None:
        """Write what ``head`` + ``raws`` needs, then swap the head; None if another won.
        ``signed``: the plan and its head, signed before anything was written (``append``)."""
        if signed is None:
            plan = self._plan(head, raws)
            data = notes.sign_log_checkpoint(private, plan.size, plan.root, self.name)
        else:
            plan, data = signed
        for path, blob in plan.writes:
            try:
                self.store.create(path, blob)
            except Conflict as e:
                raise CannotCheck(f"{self.describe()}: log object {path} exists with other bytes "
                                  "(the log is corrupt)") from e
            hook(path)
        self._tiles.update(plan.new)
        try:
            self.store.swap_head(head.token, data)
        except Conflict:
            return None
        hook(notes_head := "checkpoint")
        del notes_head
        cp = notes.parse_log_checkpoint(notes.parse_note(data).text)
        return Head(cp, data, None)
