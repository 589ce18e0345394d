"""Fuzzing with hypothesis: whatever arrives, the request parser, the source policy and the manifest reader raise only
their documented error types (or succeed), never anything else."""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.training.manifest import ManifestError, read_manifest
from protocol import MAX_REQUEST_BYTES, REQUESTS, ProtocolError, parse_request
from server import SourcePolicy
from stream.sources import SourceError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)
requests = st.fixed_dictionaries(
    {"type": st.sampled_from([*REQUESTS, "dance", ""]) | st.text(max_size=10)},
    optional={"stream": json_values, "source": json_values, "sdp": json_values, "realtime": json_values})


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=100), json_values.map(json.dumps),
                 requests.map(json.dumps)))
def test_parse_request_raises_only_protocol_errors(raw):
    try:
        request = parse_request(raw)
    except ProtocolError as exc:
        assert exc.code == "bad_request" and exc.message
        return
    assert isinstance(request, dict) and request["type"] in REQUESTS
    for key in REQUESTS[request["type"]]:
        assert isinstance(request[key], str) and request[key]


def test_parse_request_refuses_oversized_requests():
    try:
        parse_request(json.dumps({"type": "list", "pad": "x" * MAX_REQUEST_BYTES}))
    except ProtocolError as exc:
        assert "larger than" in exc.message
    else:
        raise AssertionError("an oversized request was accepted")


_policy_root = Path(tempfile.mkdtemp(prefix="vidsent-fuzz-media-"))
(_policy_root / "inside.mp4").write_bytes(b"")
POLICY = SourcePolicy(_policy_root, rtsp_hosts=["127.0.0.1:8554", "camera.local"])
specs = st.one_of(
    st.text(max_size=80),
    st.builds(lambda scheme, rest: f"{scheme}:{rest}",
              st.sampled_from(["rtsp", "rtsps", "file", "http", "concat", "subfile", "pipe", "data", "udp", "RTSP",
                               "c", "tcp", "rtmp", "srt"]), st.text(max_size=40)),
    st.builds(lambda scheme, host, port, path: f"{scheme}://user:SECRETPW@{host}{port}/{path}",
              st.sampled_from(["rtsp", "rtsps", "http"]), st.sampled_from(["127.0.0.1", "10.0.0.1", "camera.local", ""]),
              st.sampled_from(["", ":8554", ":x", ":99999", ":"]), st.text(max_size=10)),
    st.builds(lambda parts: "/".join(parts), st.lists(st.sampled_from(["..", ".", "inside.mp4", "a", "", "~"]),
                                                      max_size=6)),
)


@settings(max_examples=500, deadline=None)
@given(specs)
def test_the_source_policy_allows_only_its_folder_and_hosts(spec):
    try:
        resolved = POLICY.resolve(spec)
    except SourceError as exc:
        assert exc.code == "not_allowed" and exc.message
        assert "SECRETPW" not in exc.message  # credentials are never echoed
        return
    if resolved.lower().startswith(("rtsp://", "rtsps://")):
        assert POLICY.rtsp_allowed(resolved)
    else:
        assert Path(resolved).resolve().is_relative_to(_policy_root.resolve())


cells = st.text(alphabet=string.printable + "éü\u00a0", max_size=12)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.lists(st.sampled_from(["text", "label", "path", "split", "weight", "start", "end", "group", "x"]),
                       max_size=5),
       rows=st.lists(st.lists(cells, max_size=6), max_size=5), modality=st.sampled_from(["text", "audio", "video"]),
       raw=st.binary(max_size=60), use_raw=st.booleans())
def test_the_manifest_reader_raises_only_manifest_errors(tmp_path, header, rows, modality, raw, use_raw):
    path = tmp_path / "m.csv"
    if use_raw:
        path.write_bytes(raw)
    else:
        path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    try:
        manifest = read_manifest(path, modality)
    except ManifestError as exc:
        assert str(path) in str(exc)
        return
    assert manifest.items and all(item.label in manifest.classes for item in manifest.items)
