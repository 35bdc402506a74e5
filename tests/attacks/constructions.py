"""The malformed and tricky archives of T14 (docs/threat-model.md), each built byte-exactly
from a Go-written tar stream with tests/tarcraft.py. test_malformed.py checks what verify and
seal say about each; test_go_differential.py checks what Go's archive/tar reads from each.

``build(tar)`` takes the decompressed Go-written stream (ending in two zero blocks) and returns
the whole new ``.tar.gz`` file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tests import tarcraft as tc
from tests.attacks import gotar

NS = "monitoring-000"
BINDING = "resources/clusterrolebindings.rbac.authorization.k8s.io/cluster/backdoor.json"
BINDING_DATA = (b'{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding",'
                b'"metadata":{"name":"backdoor"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io",'
                b'"kind":"ClusterRole","name":"cluster-admin"},"subjects":[{"kind":"ServiceAccount",'
                b'"name":"default","namespace":"monitoring-000"}]}')
DECOY = f"resources/configmaps/namespaces/{NS}/decoy.json"
TOKEN = f"resources/secrets/namespaces/{NS}/token.json"
SEALED_PATH = f"resources/deployments.apps/namespaces/{NS}/hazelcast-638265.json"

# Results (docs/threat-model.md T14): "malformed" names a rule the strict reader refuses;
# "unexpected" is an accepted construction, named by the path Go's reader (Velero) sees.
MALFORMED, UNEXPECTED = "malformed", "unexpected"


@dataclass(frozen=True)
class Construction:
    id: str
    threat: str  # its entry in docs/threat-model.md
    entry: str | None  # the path the failure names; None: the archive as a whole (its folder)
    problem: str
    says: tuple[str, ...]  # fragments of the failure's detail
    build: Callable[[bytes], bytes]


def body(tar: bytes) -> bytes:
    """The stream without its end-of-archive marker (Go writes exactly two zero blocks)."""
    assert tar.endswith(tc.end_of_archive())
    return tar[: -2 * tc.BLOCK]


def appended(*parts: bytes) -> Callable[[bytes], bytes]:
    """The Go-written members, then ``parts``, then the end marker, in one gzip member."""
    return lambda tar: tc.gzip_member(body(tar) + b"".join(parts) + tc.end_of_archive())


EVIL = gotar.go_member(BINDING, BINDING_DATA).raw()

CONSTRUCTIONS = [
    # T14b: data after the end-of-archive marker.
    Construction("entry-after-end-marker", "T14b", None, MALFORMED,
                 ("non-zero bytes after the end-of-archive marker",),
                 lambda tar: tc.gzip_member(tar + EVIL + tc.end_of_archive())),
    Construction("garbage-after-gzip-member", "T14b", None, MALFORMED,
                 ("trailing bytes after the gzip member",),
                 lambda tar: tc.gzip_member(tar) + b"<html>not found</html>\n"),
    # T14c: a second gzip member (Go's gzip.NewReader is multistream: it reads on).
    Construction("appended-gzip-member", "T14c", None, MALFORMED,
                 ("a second gzip member follows the first",),
                 lambda tar: tc.gzip_member(tar) + tc.gzip_member(EVIL + tc.end_of_archive())),
    Construction("tar-split-across-members", "T14c", None, MALFORMED,
                 ("a second gzip member follows the first",),
                 lambda tar: tc.gzip_member(body(tar))
                 + tc.gzip_member(EVIL + tc.end_of_archive())),
    Construction("empty-second-member", "T14c", None, MALFORMED,
                 ("a second gzip member follows the first",),
                 lambda tar: tc.gzip_member(tar) + tc.gzip_member(b"")),
    # T14d: path traversal.
    Construction("dotdot", "T14d", "../../../etc/cron.d/evil", MALFORMED,
                 ("path has a '..' segment",),
                 appended(tc.entry("../../../etc/cron.d/evil", b"x"))),
    Construction("absolute", "T14d", "/etc/cron.d/evil", MALFORMED,
                 ("path is absolute",), appended(tc.entry("/etc/cron.d/evil", b"x"))),
    Construction("dotdot-inside", "T14d", f"resources/pods/namespaces/{NS}/../../../../x.json",
                 MALFORMED, ("path has a '..' segment",),
                 appended(tc.entry(f"resources/pods/namespaces/{NS}/../../../../x.json", b"{}"))),
    Construction("backslash", "T14d", "resources\\..\\..\\x.json", MALFORMED,
                 ("path is outside Velero's layout",),
                 appended(tc.entry("resources\\..\\..\\x.json", b"{}"))),
    # T14e: links, devices and other non-regular types.
    Construction("hardlink", "T14e", TOKEN, MALFORMED, ("hard link entries are not allowed",),
                 appended(tc.header(TOKEN, typeflag=b"1", linkname=SEALED_PATH.encode()))),
    Construction("symlink", "T14e", TOKEN, MALFORMED, ("symlink entries are not allowed",),
                 appended(tc.header(TOKEN, typeflag=b"2", linkname=b"/etc/shadow"))),
    Construction("char-device", "T14e", TOKEN, MALFORMED,
                 ("character device entries are not allowed",),
                 appended(tc.header(TOKEN, typeflag=b"3"))),
    Construction("block-device", "T14e", TOKEN, MALFORMED,
                 ("block device entries are not allowed",),
                 appended(tc.header(TOKEN, typeflag=b"4"))),
    Construction("directory", "T14e", f"resources/pods/namespaces/{NS}/dir/", MALFORMED,
                 ("directory entries are not allowed",),
                 appended(tc.header(f"resources/pods/namespaces/{NS}/dir/", typeflag=b"5"))),
    Construction("fifo", "T14e", TOKEN, MALFORMED, ("fifo entries are not allowed",),
                 appended(tc.header(TOKEN, typeflag=b"6"))),
    Construction("contiguous", "T14e", TOKEN, MALFORMED,
                 ("contiguous file entries are not allowed",),
                 appended(tc.entry(TOKEN, b'{"kind":"Secret"}', typeflag=b"7"))),
    Construction("unknown-type", "T14e", TOKEN, MALFORMED, ("unknown type 'Z'",),
                 appended(tc.entry(TOKEN, b'{"kind":"Secret"}', typeflag=b"Z"))),
    # T14f: a PAX path that differs from the USTAR name: the PAX path is what Go restores.
    Construction("pax-path-differs", "T14f", BINDING, UNEXPECTED, ("entry was not sealed",),
                 appended(tc.pax_header([("path", BINDING)]),
                          tc.entry(SEALED_PATH, BINDING_DATA))),
    # T14g: a PAX size: the header's size field claims 1024 bytes, which hide a whole entry
    # from a reader that ignores PAX; Go (and we) read 0 bytes and then the smuggled entry.
    Construction("pax-size-smuggles-an-entry", "T14g", BINDING, UNEXPECTED,
                 ("entry was not sealed",),
                 appended(tc.pax_header([("size", "0")]),
                          tc.header(DECOY, size=len(EVIL)), EVIL)),
    # T14h: a GNU long name ('L'): the long name is what Go restores.
    Construction("gnu-long-name", "T14h", BINDING, UNEXPECTED, ("entry was not sealed",),
                 appended(tc.gnu_long_name(BINDING),
                          tc.entry("backdoor.json", BINDING_DATA, magic=tc.GNU))),
    # T14i: a global PAX header (Python's tarfile applies its path to every later entry).
    Construction("global-pax-header", "T14i", None, MALFORMED,
                 ("global PAX headers ('g') are not supported",),
                 appended(tc.pax_header([("path", BINDING)], typeflag=b"g"),
                          tc.entry(DECOY, BINDING_DATA))),
    # T14j: sparse entries (Go expands the holes: its bytes are not the stored bytes).
    Construction("gnu-sparse", "T14j", TOKEN, MALFORMED, ("sparse files ('S') are not supported",),
                 appended(tc.entry(TOKEN, b'{"kind":"Secret"}', typeflag=b"S", magic=tc.GNU))),
    Construction("pax-sparse", "T14j", None, MALFORMED,
                 ("sparse files are not supported (PAX record 'GNU.sparse.major')",),
                 appended(tc.pax_header([("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0"),
                                         ("GNU.sparse.name", TOKEN),
                                         ("GNU.sparse.realsize", "17")]),
                          tc.entry("GNUSparseFile.0/token.json", b"1\n0\n17\n".ljust(512, b"\0")
                                   + b'{"kind":"Secret"}'))),
]

BY_ID = {c.id: c for c in CONSTRUCTIONS}


def of(*threats: str) -> list[Construction]:
    return [c for c in CONSTRUCTIONS if c.threat in threats]
