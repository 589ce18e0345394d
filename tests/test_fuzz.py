"""Fuzzing with hypothesis: whatever arrives, the request parser, the source policy and the manifest reader raise only
their documented error types (or succeed), never anything else."""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import (
    MAX_REQUEST_BYTES,
    MAX_SINCE_S,
    REQUESTS,
    STREAM_ID,
    ProtocolError,
    parse_request,
)
from service.access import Access, SourcePolicy
from service.static import DASHBOARD_DIR, dashboard_file
from stream.sources import SourceError
from training.manifest import ManifestError, read_manifest

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)
# look-alike ids: other scripts' letters and digits, full-width forms, a dotless/dotted i, mathematical digits
lookalike_text = st.text(alphabet="aZ09-_.\uff21\u0130\u0131\u0663\U0001d7d8\u00e9\u200b\u202e \x00/", max_size=70)
huge_numbers = st.sampled_from([2**63, -2**63, 2**64 + 1, 10**400 // 10**300, 1e308, -0.0, MAX_SINCE_S,
                                MAX_SINCE_S + 1])
requests = st.fixed_dictionaries(
    # the type as any JSON value: a list or an object must be refused like an unknown name
    {"type": st.sampled_from([*REQUESTS, "dance", ""]) | st.text(max_size=10) | json_values},
    optional={"stream": json_values | lookalike_text, "source": json_values, "sdp": json_values,
              "realtime": json_values, "since": json_values | huge_numbers})
nested = st.builds(lambda depth, opener: opener * depth, st.integers(1, 20_000), st.sampled_from(["[", '{"a":', "[{"]))


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=100), json_values.map(json.dumps),
                 requests.map(json.dumps), nested, nested.map(lambda head: head + "1" + "]" * len(head))))
def test_parse_request_raises_only_protocol_errors(raw):
    try:
        request = parse_request(raw)
    except ProtocolError as exc:
        assert exc.code == "bad_request" and exc.message
        assert len(exc.message) < 300 and all(c.isprintable() for c in exc.message)  # echoes are cut and escaped
        return
    assert isinstance(request, dict) and request["type"] in REQUESTS
    for key in REQUESTS[request["type"]]:
        assert isinstance(request[key], str) and request[key]
    if request.get("stream") is not None:
        assert STREAM_ID.fullmatch(request["stream"]) and request["stream"].isascii()
    if request.get("since") is not None:
        assert 0 <= request["since"] <= MAX_SINCE_S


url_path_parts = st.one_of(
    st.sampled_from(["index.html", "app.js", "..", ".", "%2e%2e", "%00", "index.html%00.js", "%ff", "%", "%zz",
                     "a" * 300, "vendor", "uplot", "LICENSE", "~", "%2f", "\\", "favicon.svg"]),
    st.text(max_size=20))


@settings(max_examples=500, deadline=None)
@given(st.builds(lambda root, parts: root + "/".join(parts), st.sampled_from(["/", "/dashboard/", "//", ""]),
                 st.lists(url_path_parts, max_size=5)))
def test_a_static_path_names_a_dashboard_file_or_nothing(path):
    target = dashboard_file(path)
    assert target is None or (target.is_file() and target.resolve().is_relative_to(DASHBOARD_DIR))


class _Request:
    def __init__(self, host):
        self.headers = {} if host is None else {"Host": host}


host_headers = st.one_of(
    st.none(), st.text(max_size=40),
    st.builds(lambda name, port: name + port,
              st.sampled_from(["localhost", "LOCALHOST.", "127.0.0.1", "127.9.9.9", "[::1]", "::1", "attacker.example",
                               "localhost.attacker.example", "127.0.0.1.nip.io", "10.0.0.5", "[fe80::1]", "", "[",
                               "0x7f000001", "2130706433", "localhost\x00"]),
              st.sampled_from(["", ":8765", ":x", ":99999", ":"])))


@settings(max_examples=500, deadline=None)
@given(host_headers, st.sampled_from(["127.0.0.1", "0.0.0.0", "10.0.0.5", "::1"]))
def test_only_the_names_a_server_is_reached_by_pass_the_host_check(host, bound):
    allowed = Access(bind_host=bound, allowed_hosts=("vidsent.example.org",)).host_allowed(_Request(host))
    name = (host or "").rsplit(":", 1)[0] if host and not host.endswith("]") else (host or "")
    if allowed and "example" in name:
        assert name.lower().rstrip(".") == "vidsent.example.org"
    if bound == "127.0.0.1" and allowed:
        assert name.strip("[]").lower().rstrip(".") in ("localhost", "::1") or name.startswith("127.")


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
              st.sampled_from(["rtsp", "rtsps", "http"]),
              st.sampled_from(["127.0.0.1", "10.0.0.1", "camera.local", ""]),
              st.sampled_from(["", ":8554", ":x", ":99999", ":"]), st.text(max_size=10)),
    st.builds(lambda parts: "/".join(parts), st.lists(st.sampled_from(["..", ".", "inside.mp4", "a", "", "~",
                                                                       ".hidden.mp4", ".git", "\x1b[2J", "a" * 300]),
                                                      max_size=6)),
    st.builds(lambda parts: "/" + "/".join(parts), st.lists(st.sampled_from(["tmp", "inside.mp4", ".."]), max_size=4)),
    st.just(str(_policy_root / "inside.mp4")), st.just(str(_policy_root / "x" / ".." / "inside.mp4")),
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
        # only what list_media would name: relative, no '..', nothing hidden
        assert not spec.startswith("/") and ".." not in spec.split("/")
        assert not any(part.startswith(".") for part in Path(spec).parts)


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
