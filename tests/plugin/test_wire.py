"""merkle_backup/plugin/_wire.py (hand-written protobuf codecs) against protobuf's own
implementation: classes generated at test time by grpcio-tools' protoc from the same .proto
files (merkle_backup/plugin/proto/), so a message either side writes the other reads the same.
And the decoder fails closed on malformed bytes."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from merkle_backup.plugin import _wire

PROTO = Path(__file__).resolve().parents[2] / "merkle_backup" / "plugin" / "proto"


@pytest.fixture(scope="module")
def pb(tmp_path_factory):
    """The generated modules: ObjectStore_pb2, PluginLister_pb2, Shared_pb2, health_pb2."""
    protoc = pytest.importorskip("grpc_tools.protoc", reason="needs grpcio-tools (test extra)")
    out = tmp_path_factory.mktemp("pb2")
    import grpc_tools

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    files = ["ObjectStore.proto", "Shared.proto", "PluginLister.proto", "health.proto"]
    assert protoc.main(["protoc", f"-I{PROTO}", f"-I{include}", f"--python_out={out}", *files]) == 0
    sys.path.insert(0, str(out))
    try:
        yield {name: importlib.import_module(name) for name in
               ("ObjectStore_pb2", "PluginLister_pb2", "Shared_pb2", "health_pb2")}
    finally:
        sys.path.remove(str(out))


text = st.text(max_size=40)


@given(plugin=text, bucket=text, key=text, body=st.binary(max_size=300))
def test_put_object_request(pb, plugin, bucket, key, body):
    raw = pb["ObjectStore_pb2"].PutObjectRequest(plugin=plugin, bucket=bucket, key=key,
                                                  body=body).SerializeToString()
    assert _wire.object_request(raw) == _wire.ObjectRequest(plugin, bucket, key, body)


@given(plugin=text, config=st.dictionaries(text, text, max_size=6))
def test_init_request(pb, plugin, config):
    raw = pb["ObjectStore_pb2"].ObjectStoreInitRequest(plugin=plugin, config=config)
    assert _wire.init_request(raw.SerializeToString()) == _wire.InitRequest(plugin, config)


@given(ttl=st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_create_signed_url_request_ttl(pb, ttl):
    raw = pb["ObjectStore_pb2"].CreateSignedURLRequest(plugin="p", bucket="b", key="k", ttl=ttl)
    assert _wire.create_signed_url_request(raw.SerializeToString()).ttl_ns == ttl


def test_list_requests(pb):
    m = pb["ObjectStore_pb2"]
    raw = m.ListCommonPrefixesRequest(plugin="p", bucket="b", delimiter="/", prefix="x/")
    assert _wire.list_common_prefixes_request(raw.SerializeToString()) == \
        _wire.ListCommonPrefixesRequest("p", "b", "/", "x/")
    raw = m.ListObjectsRequest(plugin="p", bucket="b", prefix="x/")
    assert _wire.list_objects_request(raw.SerializeToString()) == \
        _wire.ListObjectsRequest("p", "b", "x/")
    assert _wire.health_check_request(
        pb["health_pb2"].HealthCheckRequest(service="plugin").SerializeToString()) == "plugin"


@given(values=st.lists(text, max_size=8))
def test_string_lists(pb, values):
    m = pb["ObjectStore_pb2"]
    assert list(m.ListObjectsResponse.FromString(_wire.strings_response(values)).keys) == values
    assert list(m.ListCommonPrefixesResponse.FromString(
        _wire.strings_response(values)).prefixes) == values


@given(data=st.binary(max_size=5000), exists=st.booleans(), url=text)
def test_responses(pb, data, exists, url):
    m = pb["ObjectStore_pb2"]
    assert m.Bytes.FromString(_wire.bytes_message(data)).data == data
    assert m.ObjectExistsResponse.FromString(_wire.object_exists_response(exists)).exists == exists
    assert m.CreateSignedURLResponse.FromString(_wire.create_signed_url_response(url)).url == url


def test_list_plugins_and_health_responses(pb):
    ids = [_wire.PluginIdentifier("/plugins/merkle-backup-velero-plugin", "ObjectStore",
                                  "merkle-backup.io/aws")]
    parsed = pb["PluginLister_pb2"].ListPluginsResponse.FromString(_wire.list_plugins_response(ids))
    assert [(p.command, p.kind, p.name) for p in parsed.plugins] == \
        [("/plugins/merkle-backup-velero-plugin", "ObjectStore", "merkle-backup.io/aws")]
    health = pb["health_pb2"].HealthCheckResponse
    assert health.FromString(_wire.health_check_response(1)).status == health.SERVING


def test_status_details_carry_velero_stack(pb):
    from google.protobuf import any_pb2

    # google.rpc.Status is code 1, message 2, details 3 (google/rpc/status.proto); parse it as
    # the same shape with the generated Any, then the Stack inside.
    raw = _wire.rpc_status(15, "tampered", [_wire.StackFrame("merkle_backup/plugin/store.py",
                                                             120, "VeleroObjectStore.get_object")])
    fields = _wire._fields(raw)
    assert fields[1] == [(0, 15)] and fields[2] == [(2, b"tampered")]
    detail = any_pb2.Any.FromString(fields[3][0][1])
    assert detail.type_url == "type.googleapis.com/generated.Stack"
    stack = pb["Shared_pb2"].Stack.FromString(detail.value)
    assert [(f.file, f.line, f.function) for f in stack.frames] == \
        [("merkle_backup/plugin/store.py", 120, "VeleroObjectStore.get_object")]


@pytest.mark.parametrize("raw,why", [
    (b"\x0a\x05ab", "beyond the message's end"),  # length 5, 2 bytes
    (b"\x0a", "truncated varint"),
    (b"\x08" + b"\xff" * 10 + b"\x01", "longer than 10 bytes"),
    (b"\x0b\x0c", "groups"),  # field 1, start group
    (b"\x08\x01", "wire type 0, the schema says 2"),  # plugin as a varint
    (b"\x0a\x02\xc3\x28", "not UTF-8"),
    (b"\x00\x01", "field number 0"),
    (b"\x0d\x01\x02", "truncated fixed-width"),
])
def test_malformed_requests_fail_closed(raw, why):
    with pytest.raises(_wire.WireError, match=why):
        _wire.object_request(raw)


def test_unknown_fields_are_skipped_and_the_last_value_wins():
    raw = (b"\x0a\x01a" + b"\x7a\x03xyz" + b"\x28\x07" + b"\x31" + b"\x00" * 8
           + b"\x0a\x01b" + b"\x12\x01c" + b"\x1a\x01d")
    assert _wire.object_request(raw) == _wire.ObjectRequest("b", "c", "d")


@given(body=st.binary(max_size=300), other=st.binary(max_size=20), key=text)
def test_chunk_fast_path_agrees_with_the_decoder(pb, body, other, key):
    """PutObject's fast path either declines (None) or returns exactly the decoder's body, for
    Go's canonical encoding and for others (fields reordered, repeated, unknown ones added)."""
    first = _wire.ObjectRequest("merkle-backup.io/aws", "bk", key)
    header = _wire.object_header(first)
    m = pb["ObjectStore_pb2"].PutObjectRequest
    canonical = m(plugin=first.plugin, bucket="bk", key=key, body=body).SerializeToString()
    variants = [canonical, header + _wire._len_field(4, body) + _wire._len_field(15, other),
                _wire._len_field(4, other) + canonical, canonical + _wire._len_field(4, other),
                header + _wire._len_field(4, body)[:-1] if body else header + b"\x22"]
    assert _wire.chunk_body(canonical, header) == body
    for raw in variants:
        try:
            decoded = _wire.object_request(raw)
        except _wire.WireError:
            decoded = None
        try:
            fast = _wire.chunk_body(raw, header)
        except _wire.WireError:
            fast = None
        if decoded is None:
            assert fast is None  # malformed for the decoder: never a body on the fast path
        elif fast is not None:
            assert decoded is not None and (decoded.plugin, decoded.bucket, decoded.key,
                                            decoded.body) == (first.plugin, "bk", key, fast)
