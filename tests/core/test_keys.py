"""Resource keys (docs/format.md §3): the path -> key table, its inverse, the order, injectivity.

The expected keys come from two places that share no code with ``merkle_backup.core.keys``:
a hand-written table (one row per row of §3.1) and ``reference_key``, a second implementation
of §3.1 written as one regular expression straight from the spec text. The real fixture
``demo-small.tar.gz`` (written by Go archive/tar, see tests/fixtures/README.md) provides the
paths Velero actually produces.
"""

from __future__ import annotations

import functools
import itertools
import re
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from merkle_backup.core.keys import (
    SCOPE_CLUSTER,
    SCOPE_METADATA,
    SCOPE_NAMESPACED,
    PathError,
    ResourceKey,
    key_for_bucket_object,
    key_for_tar_path,
)
from tests.conftest import short_id


def tar_path_for_key(key: ResourceKey) -> str:
    """The inverse of key_for_tar_path: a test reference for the injectivity the format relies on."""
    if key.scope == SCOPE_METADATA:
        return "metadata/version"
    version = f"{key.version}/" if key.version else ""
    if key.scope == SCOPE_CLUSTER:
        return f"resources/{key.resource}/{version}cluster/{key.name}.json"
    if key.scope == SCOPE_NAMESPACED:
        return f"resources/{key.resource}/{version}namespaces/{key.namespace}/{key.name}.json"
    raise ValueError(f"{key.scope!r} keys have no tar path")


FIXTURE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "bucket" / "backups" / "demo-small"
TARBALL = FIXTURE_DIR / "demo-small.tar.gz"

# --- A second implementation of docs/format.md §3.1, from the spec text alone -------------------

# §3.1: gr, v, ns are path segments held to §2.6 (non-empty, no "/", NUL, backslash or control
# character, not "." or ".."); names are not held to Kubernetes syntax.
SEG = r"[^/\\\x00-\x1f\x7f]+"
BUCKET = r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}"
_TAR_ROW = re.compile(
    rf"resources/(?P<gr>{SEG})/"
    rf"(?:(?!(?:cluster|namespaces)/)(?P<v>{SEG})/)?"  # a version dir is never a scope name
    rf"(?:cluster/(?P<cn>{SEG})\.json|namespaces/(?P<ns>{SEG})/(?P<nn>{SEG})\.json)"
)


def valid_under_2_6(path: str) -> bool:
    """docs/format.md §2.6, the rules the archive reader holds every path to before §3.1."""
    return all(seg not in ("", ".", "..") for seg in path.split("/")) and not re.search(
        r"[\\\x00-\x1f\x7f]", path
    )


def reference_key(path: str) -> tuple[str, str, str, str, str] | None:
    """§3.1 for a tar path valid under §2.6, or None when no row matches."""
    if not valid_under_2_6(path):
        return None
    if path == "metadata/version":
        return ("", "", "metadata", "version", "")
    m = _TAR_ROW.fullmatch(path)
    if m is None:
        return None
    gr, v = m["gr"], m["v"] or ""
    if m["cn"] is not None:
        if gr == "namespaces":
            return (m["cn"], "namespaces", "cluster", m["cn"], v)
        return ("", gr, "cluster", m["cn"], v)
    return (m["ns"], gr, "namespaces", m["nn"], v)


@functools.cache
def fixture_tar_paths() -> tuple[str, ...]:
    with tarfile.open(TARBALL, "r:gz") as tar:
        return tuple(member.name for member in tar.getmembers())


def fixture_bucket_objects() -> list[str]:
    # docs/format.md §7.3: every other file of the folder, minus *.seal and dot files.
    return sorted(
        p.name
        for p in FIXTURE_DIR.iterdir()
        if p.is_file() and p.name != TARBALL.name
        and not p.name.endswith(".seal") and not p.name.startswith(".")
    )


def fixture_keys() -> list[ResourceKey]:
    return [key_for_tar_path(p) for p in fixture_tar_paths()] + [
        key_for_bucket_object(f) for f in fixture_bucket_objects()
    ]


# --- §3.1, row by row ----------------------------------------------------------------------------

# (tar path, expected key) - one entry per row of the table, each with and without a version dir.
TABLE = [
    ("metadata/version", ("", "", "metadata", "version", "")),
    ("resources/persistentvolumes/cluster/pv-1.json", ("", "persistentvolumes", "cluster", "pv-1", "")),
    ("resources/clusterroles.rbac.authorization.k8s.io/v1-preferredversion/cluster/admin.json",
     ("", "clusterroles.rbac.authorization.k8s.io", "cluster", "admin", "v1-preferredversion")),
    ("resources/namespaces/cluster/payments-001.json",
     ("payments-001", "namespaces", "cluster", "payments-001", "")),
    ("resources/namespaces/v1-preferredversion/cluster/payments-001.json",
     ("payments-001", "namespaces", "cluster", "payments-001", "v1-preferredversion")),
    ("resources/namespaces/v1beta1/cluster/development.json",
     ("development", "namespaces", "cluster", "development", "v1beta1")),
    ("resources/pods/namespaces/monitoring-000/flocker-web.json",
     ("monitoring-000", "pods", "namespaces", "flocker-web", "")),
    ("resources/services/v1beta1/namespaces/payments-001/adservice-6f6894.json",
     ("payments-001", "services", "namespaces", "adservice-6f6894", "v1beta1")),
    # Edge cases the table allows.
    ("resources/pods/namespaces/cluster/a.json", ("cluster", "pods", "namespaces", "a", "")),
    ("resources/pods/namespaces/namespaces/a.json", ("namespaces", "pods", "namespaces", "a", "")),
    ("resources/cluster/cluster/a.json", ("", "cluster", "cluster", "a", "")),
    ("resources/namespaces/namespaces/ns/a.json", ("ns", "namespaces", "namespaces", "a", "")),
    ("resources/pods/cluster/a.json.json", ("", "pods", "cluster", "a.json", "")),
    ("resources/pods/cluster/Ünïcödé Name_1.json", ("", "pods", "cluster", "Ünïcödé Name_1", "")),
    ("resources/pods/v1/cluster/..json", ("", "pods", "cluster", ".", "v1")),
    ("resources/a.b-c.d/0/cluster/x.json", ("", "a.b-c.d", "cluster", "x", "0")),
    ("resources/pods/metadata/cluster/x.json", ("", "pods", "cluster", "x", "metadata")),
    # §3.1: segments are not held to Kubernetes syntax (Velero's restore reads any directory).
    ("resources/Pods/cluster/a.json", ("", "Pods", "cluster", "a", "")),
    ("resources/po_ds/V1/cluster/a.json", ("", "po_ds", "cluster", "a", "V1")),
    ("resources/.pods/v1.2/namespaces/ns.x/a.json", ("ns.x", ".pods", "namespaces", "a", "v1.2")),
    ("resources/pods/namespaces/Default/a.json", ("Default", "pods", "namespaces", "a", "")),
    ("resources/namespaces/cluster/Default.json", ("Default", "namespaces", "cluster", "Default", "")),
    ("resources/namespaces/-x_/cluster/a.b.json", ("a.b", "namespaces", "cluster", "a.b", "-x_")),
    ("resources/" + "a" * 300 + "/cluster/x.json", ("", "a" * 300, "cluster", "x", "")),
    ("resources/pöds/ünï/namespaces/nß/ä.json", ("nß", "pöds", "namespaces", "ä", "ünï")),
]


@pytest.mark.parametrize(("path", "expected"), TABLE, ids=[p[:70] for p, _ in TABLE])
def test_table_rows(path: str, expected: tuple[str, ...]) -> None:
    key = key_for_tar_path(path)
    assert key.components() == expected
    assert reference_key(path) == expected  # the table and the reference agree
    assert tar_path_for_key(key) == path


def test_fixture_covers_every_row() -> None:
    """Every tar row of §3.1, with and without a version dir, occurs in the real fixture."""
    rows = set()
    for path in fixture_tar_paths():
        key = key_for_tar_path(path)
        kind = "namespace-object" if key.resource == "namespaces" and key.scope == "cluster" else key.scope
        rows.add((kind, bool(key.version)))
    assert rows == {
        ("metadata", False),
        ("cluster", False), ("cluster", True),
        ("namespace-object", False), ("namespace-object", True),
        ("namespaces", False), ("namespaces", True),
    }


def test_fixture_paths_map_and_invert() -> None:
    paths = fixture_tar_paths()
    assert len(paths) == 322  # tests/fixtures/README.md
    for path in paths:
        key = key_for_tar_path(path)
        assert key.components() == reference_key(path), path
        assert tar_path_for_key(key) == path
    keys = [key_for_tar_path(p) for p in paths]
    assert len(set(keys)) == len(keys)


def test_fixture_preferredversion_copies_share_identity() -> None:
    """A -preferredversion copy has the key of its classic copy except for ``version``."""
    paths = set(fixture_tar_paths())
    copies = [p for p in paths if "-preferredversion/" in p]
    assert copies
    for path in copies:
        classic = re.sub(r"/[a-z0-9-]+-preferredversion/", "/", path)
        assert classic in paths
        a, b = key_for_tar_path(classic), key_for_tar_path(path)
        assert a.components()[:4] == b.components()[:4]
        assert a.version == "" and b.version.endswith("-preferredversion")


def test_bucket_objects_of_fixture() -> None:
    names = fixture_bucket_objects()
    assert "velero-backup.json" in names and "demo-small-logs.gz" in names
    for name in names:
        key = key_for_bucket_object(name)
        assert key.components() == ("", "", "bucket", name, "")
        with pytest.raises(ValueError):
            tar_path_for_key(key)  # bucket keys have no tar path


@pytest.mark.parametrize(
    "name", ["velero-backup.json", "a", "A.b_c-d", "a.b.c", "0", "x" * 255, "a-.gz", "Z_"],
    ids=short_id,
)
def test_bucket_object_accepted(name: str) -> None:
    assert key_for_bucket_object(name) == ResourceKey("", "", "bucket", name, "")


@pytest.mark.parametrize(
    "name",
    ["", ".velero", "-x", "_x", ".", "..", "a..b", "a/b", "a b", "ü.json", "x" * 256, "a\x00",
     "a\n", "a\\b", "a:b", "demo/velero-backup.json"],
    ids=short_id,
)
def test_bucket_object_rejected(name: str) -> None:
    with pytest.raises(PathError):
        key_for_bucket_object(name)


REJECTED = [
    # outside the layout
    "", "metadata", "metadata/", "metadata/version/", "metadata/versions", "/metadata/version",
    "./metadata/version", "Metadata/version", "velero-backup.json", "resources", "resources/",
    "resource/pods/cluster/a.json", "Resources/pods/cluster/a.json", "/resources/pods/cluster/a.json",
    "./resources/pods/cluster/a.json", "x/resources/pods/cluster/a.json",
    # empty segments
    "resources//cluster/a.json", "resources/pods//cluster/a.json", "resources/pods/namespaces//a.json",
    "resources/pods/v1//cluster/a.json", "resources/pods/cluster//a.json",
    # too few segments
    "resources/pods", "resources/pods/cluster", "resources/pods/a.json", "resources/pods/cluster/",
    "resources/pods/namespaces/a.json", "resources/pods/namespaces/ns", "resources/pods/v1/cluster",
    "resources/pods/v1/a.json", "resources/pods/v1/namespaces/a.json",
    # too many segments
    "resources/pods/cluster/x/a.json", "resources/pods/namespaces/ns/x/a.json",
    "resources/pods/v1/v2/cluster/a.json", "resources/pods/v1/namespaces/ns/x/a.json",
    "resources/pods/v1/v2/namespaces/ns/a.json", "resources/pods/cluster/a.json/",
    # a version directory named like a scope is parsed as the scope
    "resources/pods/cluster/cluster/a.json", "resources/pods/cluster/namespaces/ns/a.json",
    "resources/pods/namespaces/namespaces/ns/a.json", "resources/pods/namespaces/cluster/x/a.json",
    "resources/namespaces/cluster/cluster/a.json",
    # NUL in any segment (components must be NUL-free for the order of §3.2)
    "resources/po\x00ds/cluster/a.json", "resources/pods/v\x001/cluster/a.json",
    "resources/pods/namespaces/n\x00s/a.json", "resources/pods/cluster/a\x00.json",
    "resources/pods/namespaces/ns/\x00.json", "resources/namespaces/cluster/n\x00.json",
    "metadata/version\x00",
    # empty name / not <name>.json
    "resources/pods/cluster/.json", "resources/pods/namespaces/ns/.json",
    "resources/namespaces/cluster/.json", "resources/pods/v1/cluster/.json",
    "resources/pods/cluster/a", "resources/pods/cluster/a.JSON", "resources/pods/cluster/a.yaml",
    "resources/pods/cluster/json", "resources/pods/namespaces/ns/a.json.gz",
]


@pytest.mark.parametrize("path", REJECTED, ids=[repr(p)[1:71] or "<empty>" for p in REJECTED])
def test_rejected_paths(path: str) -> None:
    assert reference_key(path) is None  # the spec text refuses it too
    with pytest.raises(PathError):
        key_for_tar_path(path)


# Paths §2.6 refuses before §3.1 is applied: the archive reader's job (keys.py, line 28). Whether
# key_for_tar_path accepts them or not, an accepted one must still invert exactly (injectivity).
READER_REFUSES = [
    "resources/../cluster/a.json", "resources/./cluster/a.json", "resources/pods/../cluster/a.json",
    "resources/pods/namespaces/../a.json", "resources/pods/cluster/a\\b.json",
    "resources/pods/cluster/a\nb.json", "resources/pods/namespaces/n\x7fs/a.json",
]


@pytest.mark.parametrize("path", READER_REFUSES, ids=short_id)
def test_paths_left_to_the_reader_invert_if_accepted(path: str) -> None:
    assert reference_key(path) is None
    try:
        key = key_for_tar_path(path)
    except PathError:
        return
    assert tar_path_for_key(key) == path


def test_path_error_is_value_error() -> None:
    assert issubclass(PathError, ValueError)


# --- §3.2: order and namespace contiguity on the real fixture -------------------------------------


def _runs(values: list[str]) -> dict[str, list[int]]:
    runs: dict[str, list[int]] = {}
    for i, value in enumerate(values):
        runs.setdefault(value, []).append(i)
    return runs


@pytest.mark.parametrize("order", ["dataclass", "sort_bytes"])
def test_fixture_namespaces_are_contiguous(order: str) -> None:
    keys = fixture_keys()
    keys = sorted(keys) if order == "dataclass" else sorted(keys, key=ResourceKey.sort_bytes)
    assert sorted(keys) == sorted(keys, key=ResourceKey.sort_bytes)
    namespaces = [k.namespace for k in keys]
    runs = _runs(namespaces)
    assert {"", "payments-001", "production", "monitoring-000", "development"} <= set(runs)
    for namespace, indices in runs.items():
        assert indices == list(range(indices[0], indices[-1] + 1)), f"namespace {namespace!r} split"
    assert runs[""][0] == 0  # namespace "" first

    # Each Namespace object and its versioned copies are inside its namespace's run.
    paths = fixture_tar_paths()
    for namespace in ("payments-001", "production", "monitoring-000", "development"):
        first, last = runs[namespace][0], runs[namespace][-1]
        for path in (f"resources/namespaces/cluster/{namespace}.json",
                     f"resources/namespaces/v1-preferredversion/cluster/{namespace}.json"):
            assert path in paths
            assert first <= keys.index(key_for_tar_path(path)) <= last
        # ... and so are all its namespaced resources, in every version directory.
        for path in paths:
            if f"/namespaces/{namespace}/" in path:
                assert first <= keys.index(key_for_tar_path(path)) <= last


def test_fixture_empty_namespace_order() -> None:
    """§3.2: namespace "" holds bucket objects, then metadata/version, then cluster resources."""
    scopes = [k.scope for k in sorted(fixture_keys()) if k.namespace == ""]
    n_bucket = len(fixture_bucket_objects())
    assert scopes[:n_bucket] == ["bucket"] * n_bucket
    assert scopes[n_bucket] == "metadata"
    assert set(scopes[n_bucket + 1 :]) == {"cluster"}
    assert len(scopes) - n_bucket - 1 == 19 + 24  # cluster-scoped entries of the fixture


# --- Generated paths: order property, injectivity, agreement with the reference ------------------

# Segments: anything a valid tar path segment may hold (docs/format.md §2.6): no "/", backslash,
# control character or surrogate, not "." or "..". Small alphabets make shared prefixes likely.
_any_segment = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"),
    min_size=1, max_size=8,
)
segments = (
    st.text(alphabet="ab.-_A\u00e9\U0001f600 ", min_size=1, max_size=5) | _any_segment
).filter(lambda s: s not in (".", ".."))
dns_labels = st.sampled_from(["a", "b", "a-b", "ab", "a0", "default", "kube-system"]) | segments
versions = (
    st.sampled_from(["v1", "v1-preferredversion", "v1beta1", "v2", "a", "a0"]) | segments
).filter(lambda v: v not in ("cluster", "namespaces"))
group_resources = (
    st.sampled_from(["pods", "namespaces", "deployments.apps", "a", "a.b", "a-b", "cluster"])
    | segments
)
object_names = segments | st.sampled_from([".", "..", "a.json", "a"])
bucket_names = (
    st.sampled_from(["velero-backup.json", "a", "a.b", "a-b", "A", "b"])
    | st.from_regex(BUCKET, fullmatch=True).filter(lambda s: ".." not in s)
)


@st.composite
def tar_paths(draw: st.DrawFn) -> tuple[str, tuple[str, ...]]:
    """A valid tar path and its key, built from the rows of §3.1."""
    kind = draw(st.sampled_from(["metadata", "cluster", "namespace-object", "namespaced"]))
    if kind == "metadata":
        return "metadata/version", ("", "", "metadata", "version", "")
    version = draw(st.one_of(st.just(""), versions))
    vdir = f"{version}/" if version else ""
    if kind == "cluster":
        gr = draw(group_resources.filter(lambda g: g != "namespaces"))
        name = draw(object_names)
        return f"resources/{gr}/{vdir}cluster/{name}.json", ("", gr, "cluster", name, version)
    if kind == "namespace-object":
        ns = draw(dns_labels)
        return f"resources/namespaces/{vdir}cluster/{ns}.json", (ns, "namespaces", "cluster", ns, version)
    gr, ns, name = draw(group_resources), draw(dns_labels), draw(object_names)
    return f"resources/{gr}/{vdir}namespaces/{ns}/{name}.json", (ns, gr, "namespaces", name, version)


@st.composite
def any_keys(draw: st.DrawFn) -> ResourceKey:
    if draw(st.integers(0, 4)) == 0:
        return key_for_bucket_object(draw(bucket_names))
    path, expected = draw(tar_paths())
    key = key_for_tar_path(path)
    assert key.components() == expected
    return key


_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_settings
@given(tar_paths())
def test_generated_paths_map_to_their_row(case: tuple[str, tuple[str, ...]]) -> None:
    path, expected = case
    key = key_for_tar_path(path)
    assert key.components() == expected
    assert reference_key(path) == expected
    assert tar_path_for_key(key) == path
    assert key.sort_bytes().count(b"\x00") == 4  # the separators, and no NUL inside a component


@_settings
@given(any_keys(), any_keys())
def test_order_equals_sort_bytes_order(a: ResourceKey, b: ResourceKey) -> None:
    assert (a < b) == (a.sort_bytes() < b.sort_bytes())
    assert (a == b) == (a.sort_bytes() == b.sort_bytes())
    # §3.2: component by component, each compared as UTF-8 bytes
    as_bytes = lambda k: tuple(c.encode() for c in k.components())
    assert (a < b) == (as_bytes(a) < as_bytes(b))


@settings(max_examples=50, deadline=None)
@given(st.lists(any_keys(), min_size=2, max_size=30))
def test_sorting_is_the_same_in_both_orders_and_namespaces_contiguous(keys: list[ResourceKey]) -> None:
    by_key = sorted(keys)
    assert by_key == sorted(keys, key=ResourceKey.sort_bytes)
    for namespace, indices in _runs([k.namespace for k in by_key]).items():
        assert indices == list(range(indices[0], indices[-1] + 1)), namespace


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(bucket_names, tar_paths().map(lambda c: c[0])),
                min_size=2, max_size=20, unique=True))
def test_distinct_accepted_paths_give_distinct_keys(paths: list[str]) -> None:
    """Bucket objects and tar entries together: no two accepted (kind, path) share a key."""
    keys = {}
    for path in paths:
        if re.fullmatch(BUCKET, path) and ".." not in path:
            keys[("bucket", path)] = key_for_bucket_object(path)
        try:
            keys[("tar", path)] = key_for_tar_path(path)
        except PathError:
            pass
    assert len(set(keys.values())) == len(keys)


# Path-ish strings: segments that the layout uses, and near misses, so that most rows and most
# rejection rules are hit. key_for_tar_path must agree with the reference on every one of them.
_segments = st.sampled_from([
    "resources", "metadata", "version", "cluster", "namespaces", "pods", "namespaces", "v1",
    "v1-preferredversion", "a", "A", "a.json", ".json", "a.b.json", "-a", "a-", "", ".", "..",
    "a_b", "a.b", "Cluster", "x.JSON", "é.json", "a\x00", "\x00.json", "..json",
]) | st.text(alphabet="ab.-/_A\x00", max_size=6)


@settings(max_examples=250, deadline=None)
@given(st.lists(_segments, min_size=1, max_size=7).map("/".join))
def test_path_ish_strings_agree_with_reference(path: str) -> None:
    expected = reference_key(path)
    if not valid_under_2_6(path):
        # Left to the reader (§2.6); but never a NUL or an empty segment, and always invertible.
        try:
            key = key_for_tar_path(path)
        except PathError:
            return
        assert "\x00" not in path and "" not in path.split("/")
        assert tar_path_for_key(key) == path
    elif expected is None:
        with pytest.raises(PathError):
            key_for_tar_path(path)
    else:
        key = key_for_tar_path(path)
        assert key.components() == expected
        assert tar_path_for_key(key) == path


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(_segments, min_size=2, max_size=7).map("/".join), min_size=2, max_size=20,
                unique=True))
def test_injective_on_path_ish_strings(paths: list[str]) -> None:
    keys = []
    for path in paths:
        try:
            keys.append(key_for_tar_path(path))
        except PathError:
            continue
    assert len(set(keys)) == len(keys)


def test_injective_on_all_pairs_of_fixture_paths() -> None:
    paths = list(fixture_tar_paths())
    keys = {p: key_for_tar_path(p) for p in paths}
    for a, b in itertools.combinations(paths, 2):
        assert keys[a] != keys[b]
        assert (keys[a] < keys[b]) == (keys[a].sort_bytes() < keys[b].sort_bytes())
