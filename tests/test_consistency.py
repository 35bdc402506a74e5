"""The manifest check (consistency.check_manifest) against Go's encoding/json, which restore uses.

The check may refuse what restore would accept (stricter is allowed), but it must never pass a
manifest whose metadata, as Go reads it, disagrees with its path: that is the point of the
check (threat model T17). Each named case pins our verdict and checks Go's view beside it;
the fuzz test checks the rule on thousands of mutations of the real manifests of a Go-written
backup.
"""

from __future__ import annotations

import base64
import json
import random
import subprocess
from collections.abc import Iterator

import pytest

from merkle_backup.archive import ArchiveReader
from merkle_backup.consistency import check_manifest
from merkle_backup.core.keys import key_for_tar_path
from tests.attacks.golist import build_go_tool
from tests.conftest import FIXTURES

NAMESPACED = "resources/deployments.apps/namespaces/shop/web.json"
CLUSTER = "resources/persistentvolumes/cluster/pv-1.json"

NOT_JSON = "manifest is not valid JSON"
NO_METADATA = "manifest is not a JSON object with metadata"
OK = None

# (name, path, manifest, our verdict: None or the start of the problem).
CASES = [
    ("plain", NAMESPACED, b'{"kind":"Deployment","metadata":{"name":"web","namespace":"shop"}}', OK),
    ("whitespace around", NAMESPACED, b' \n{"metadata":{"name":"web","namespace":"shop"}}\r\n\t', OK),
    ("escaped value", NAMESPACED, b'{"metadata":{"name":"w\\u0065b","namespace":"shop"}}', OK),
    ("repeated name, last is right", NAMESPACED,
     b'{"metadata":{"name":"evil","name":"web","namespace":"shop"}}', OK),
    ("repeated name, last is wrong", NAMESPACED,
     b'{"metadata":{"name":"web","name":"evil","namespace":"shop"}}', "metadata.name is 'evil'"),
    ("repeated metadata, last is wrong", NAMESPACED,
     b'{"metadata":{"name":"web","namespace":"shop"},"metadata":{"name":"web","namespace":"kube-system"}}',
     "metadata.namespace is 'kube-system'"),
    ("escaped member name overrides", NAMESPACED,
     b'{"metadata":{"name":"web","namespace":"shop"},"meta\\u0064ata":{"name":"evil","namespace":"shop"}}',
     "metadata.name is 'evil'"),
    ("escaped inner member name overrides", NAMESPACED,
     b'{"metadata":{"name":"web","namespace":"shop","n\\u0061me":"evil"}}', "metadata.name is 'evil'"),
    ("capitalised member is another member", NAMESPACED,
     b'{"Metadata":{"name":"web","namespace":"shop"}}', NO_METADATA),
    ("metadata null last", NAMESPACED,
     b'{"metadata":{"name":"web","namespace":"shop"},"metadata":null}', NO_METADATA),
    ("metadata not an object", NAMESPACED, b'{"metadata":"web"}', NO_METADATA),
    ("top level array", NAMESPACED, b'[{"metadata":{"name":"web","namespace":"shop"}}]', NO_METADATA),
    ("top level null", NAMESPACED, b"null", NO_METADATA),
    ("name not a string", NAMESPACED, b'{"metadata":{"name":7,"namespace":"shop"}}', "metadata.name is 7"),
    ("namespace missing", NAMESPACED, b'{"metadata":{"name":"web"}}', "metadata.namespace is ''"),
    ("namespace not a string", NAMESPACED, b'{"metadata":{"name":"web","namespace":["shop"]}}',
     "metadata.namespace is ['shop']"),
    ("cluster scoped", CLUSTER, b'{"metadata":{"name":"pv-1"}}', OK),
    ("cluster scoped, empty namespace", CLUSTER, b'{"metadata":{"name":"pv-1","namespace":""}}', OK),
    ("cluster scoped with a namespace", CLUSTER, b'{"metadata":{"name":"pv-1","namespace":"shop"}}',
     "metadata.namespace is 'shop'"),
    ("trailing data", NAMESPACED, b'{"metadata":{"name":"web","namespace":"shop"}} {}', NOT_JSON),
    ("byte order mark", NAMESPACED, b'\xef\xbb\xbf{"metadata":{"name":"web","namespace":"shop"}}', NOT_JSON),
    ("trailing comma", NAMESPACED, b'{"metadata":{"name":"web","namespace":"shop"},}', NOT_JSON),
    ("NaN", NAMESPACED, b'{"metadata":{"name":"web","namespace":"shop"},"x":NaN}', NOT_JSON),
    ("control character in a string", NAMESPACED,
     b'{"metadata":{"name":"web","namespace":"shop"},"x":"a\x01"}', NOT_JSON),
    ("leading zero", NAMESPACED, b'{"metadata":{"name":"web","namespace":"shop"},"x":01}', NOT_JSON),
    ("truncated", NAMESPACED, b'{"metadata":{"name":"web","namespace":"shop"}', NOT_JSON),
    ("empty", NAMESPACED, b"", NOT_JSON),
    # Go accepts these too: it replaces invalid UTF-8 by U+FFFD, and reads big integers as floats.
    ("invalid UTF-8 in a skipped string", NAMESPACED,
     b'{"metadata":{"name":"web","namespace":"shop"},"x":"\xff\xfe"}', OK),
    ("integer over 64 bits", NAMESPACED,
     b'{"metadata":{"name":"web","namespace":"shop"},"x":123456789012345678901234567890}', OK),
    # Stricter than Go, which reads these with matching metadata: refused, never passed.
    ("invalid UTF-8 in the name", NAMESPACED, b'{"metadata":{"name":"web\xff","namespace":"shop"}}',
     NOT_JSON),
    ("unpaired surrogate escape", NAMESPACED,
     b'{"metadata":{"name":"web","namespace":"shop"},"x":"\\ud800"}', NOT_JSON),
    ("nesting 5000 deep", NAMESPACED,
     b'{"metadata":{"name":"web","namespace":"shop"},"x":' + b"[" * 5000 + b"]" * 5000 + b"}",
     "manifest nests too deeply"),
]


@pytest.fixture(scope="module")
def go_view(tmp_path_factory: pytest.TempPathFactory):
    """A function: manifests -> Go's (error, name, namespace) of each (tests/tools/jsonmeta)."""
    binary = build_go_tool("jsonmeta", tmp_path_factory.mktemp("jsonmeta"))
    if binary is None:
        pytest.skip("go is not installed (CI installs golang-go)")

    def view(manifests: list[bytes]) -> list[tuple[str, str, str]]:
        lines = "".join(base64.b64encode(m).decode() + "\n" for m in manifests)
        out = subprocess.run([str(binary)], input=lines, capture_output=True, text=True, check=True)
        views = [json.loads(line) for line in out.stdout.splitlines()]
        assert len(views) == len(manifests)
        return [(v["err"], v["name"], v["namespace"]) for v in views]

    return view


def _expected(path: str) -> tuple[str, str]:
    f = key_for_tar_path(path)
    return f.name, f.namespace if f.scope == "namespaces" else ""


def _assert_never_passes_a_mismatch(path: str, data: bytes, verdict: str | None,
                                    go: tuple[str, str, str]) -> None:
    """The differential rule: a manifest we pass is one Go reads, with the path's metadata."""
    err, name, namespace = go
    if verdict is None:
        assert err == "", f"we pass a manifest Go cannot read ({err}): {data[:80]!r}"
        assert (name, namespace) == _expected(path), f"we pass what Go reads as {go}: {data[:80]!r}"


@pytest.mark.parametrize("label,path,data,want", CASES, ids=[c[0] for c in CASES])
def test_named_case(label: str, path: str, data: bytes, want: str | None, go_view) -> None:
    verdict = check_manifest(key_for_tar_path(path), data)
    if want is None:
        assert verdict is None
    else:
        assert verdict is not None and verdict.startswith(want), verdict
    (go,) = go_view([data])
    _assert_never_passes_a_mismatch(path, data, verdict, go)
    # Wherever Go finds the metadata wrong or cannot read the manifest, we refuse too.
    if go[0] or (go[1], go[2]) != _expected(path):
        assert verdict is not None


def _fixture_manifests() -> Iterator[tuple[str, bytes]]:
    tarball = FIXTURES / "demo-small" / "demo-small.tar.gz"
    with tarball.open("rb") as f:
        for path, data, problem in ArchiveReader(f).tuples():
            fields = key_for_tar_path(path) if problem is None else None
            if fields is not None and fields.scope in ("namespaces", "cluster") and not fields.version:
                yield path, data


# Tokens that move JSON across its edges: structure, escapes (of member names too), the
# members the check reads, and bytes Go and Python decode differently.
TOKENS = [b'"', b"\\", b"{", b"}", b"[", b"]", b",", b":", b" ", b"\n", b"\\u0000", b"\\ud800",
          b"\\u006e", b"\\u0061me", b"\\\"", b"\xff", b"\xc3\xa9", b"\x00", b'"metadata":',
          b'"name":', b'"namespace":', b'"evil"', b"null", b"1e999", b"-0", b"\xef\xbb\xbf"]


def _mutate(rng: random.Random, data: bytes) -> bytes:
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(data) + 1)
        op = rng.random()
        if op < 0.4:
            data = data[:i] + rng.choice(TOKENS) + data[i:]
        elif op < 0.7:
            data = data[:i] + data[i + rng.randint(1, 8):]
        else:
            # Repeat a member: copy a slice of the manifest elsewhere (repeated names).
            j = rng.randrange(len(data) + 1)
            data = data[:i] + data[min(i, j):max(i, j)][:200] + data[i:]
    return data


def test_mutated_real_manifests_never_pass_a_mismatch(go_view) -> None:
    rng = random.Random(20261128)
    bases = list(_fixture_manifests())
    assert len(bases) > 50
    cases = []
    for path, data in bases:
        cases.append((path, data))
        # The metadata repeated with another name, and the name itself rewritten.
        cases.append((path, data[:-1] + b',"metadata":{"name":"evil"}}'))
        cases += [(path, _mutate(rng, data)) for _ in range(25)]
    views = go_view([d for _, d in cases])
    verdicts = [check_manifest(key_for_tar_path(p), d) for p, d in cases]
    for (path, data), verdict, go in zip(cases, verdicts, views):
        _assert_never_passes_a_mismatch(path, data, verdict, go)
    # The real manifests pass, and so must many mutations (the check is not refusing blindly).
    assert all(v is None for v in verdicts[:: 27])
    passed = sum(v is None for v in verdicts)
    refused_by_go_too = sum(v is not None and bool(g[0]) for v, g in zip(verdicts, views))
    assert passed > len(bases) * 2 and refused_by_go_too > len(cases) // 4
