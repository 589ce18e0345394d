"""docs/protocol.schema.json: up to date with protocol.py, a valid draft 2020-12 schema, and saying what the
protocol says (tests/conftest.py checks every message a server sends in the tests against it)."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from models.base import ModalityScore
from models.fusion import sentiment_scale
from protocol import (
    REQUESTS,
    SERVER_MESSAGES,
    AlertMessage,
    EndMessage,
    HelloMessage,
    MediaMessage,
    StatusMessage,
    TranscriptMessage,
    WindowMessage,
    parse_request,
)
from protocol_schema import SCHEMA_PATH, message_checkers, schema_text

SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA)


def test_the_committed_schema_is_what_protocol_py_makes_now():
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(), (
        "docs/protocol.schema.json is stale: run `python -m protocol_schema --write` and commit it")


def test_it_is_a_draft_2020_12_schema_of_every_message_and_request():
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    server = SCHEMA["$defs"]["ServerMessage"]["discriminator"]["mapping"]
    requests = SCHEMA["$defs"]["ClientRequest"]["discriminator"]["mapping"]
    assert set(server) == set(SERVER_MESSAGES) and set(requests) == set(REQUESTS)
    for kind, ref in server.items():
        definition = SCHEMA["$defs"][ref.rsplit("/", 1)[1]]
        assert definition["properties"]["type"]["const"] == kind and definition["properties"]["v"]["const"] == 1
        assert {"type", "v"} <= set(definition["required"]) and definition["additionalProperties"] is True
    for kind, ref in requests.items():  # the fields parse_request insists on
        definition = SCHEMA["$defs"][ref.rsplit("/", 1)[1]]
        assert set(definition["required"]) == REQUESTS[kind] | {"type"}, kind


def window(**fused) -> WindowMessage:
    text = ModalityScore.of(0.8, details={"vader": 0.4}).to_json()
    audio = ModalityScore.missing("no audio track").to_json()
    return WindowMessage("cam", 3, 6.0, 10.0, {"text": text, "audio": audio},
                         {"score": 0.8, "label": "positive", "graded": "Positive", "method": "weighted",
                          "used": ["text"], "missing": ["audio"], **fused},
                         {"score": 0.7, "label": "positive", "graded": "Positive", "half_life_s": 6.0}, "great",
                         latency_s=None)


def test_messages_as_the_server_makes_them_validate_and_the_nested_shapes_are_checked():
    good = [window(), TranscriptMessage("cam", 1.0, 2.0, "hi", True, [{"start": 1.0, "end": 2.0, "word": "hi",
                                                                       "p": 0.9}]),
            StatusMessage("cam", "running", source={"kind": "file", "name": "a.mp4", "has_audio": True,
                                                    "has_video": False, "duration": 4.0, "width": None,
                                                    "height": None, "fps": None}),
            HelloMessage("vidsent", [], [{"urls": ["stun:stun.example.org"]}], scale=sentiment_scale()),
            MediaMessage([{"path": "a.mp4", "size": 10}]),
            AlertMessage("cam", "low", "cleared", "rolling", None, 0.3, 1.0, 9.0, "the stream ended")]
    for message in good:
        assert VALIDATOR.is_valid(json.loads(message.dumps())), message
    checks = message_checkers(SCHEMA)
    bad = {
        "a label no one documents": window(label="happy"),
        "fused without its method": window(method=None),
        "an unknown grade": window(graded="Very Positive"),
    }
    for why, message in bad.items():
        assert checks["window"](json.loads(message.dumps())) is not None, why
    hello = json.loads(HelloMessage("vidsent", [], scale={"labels": {"positive": 0.6}, "grades": []}).dumps())
    assert "negative" in checks["hello"](hello)
    assert checks["end"](json.loads(EndMessage("cam", {"reason": "eof"}).dumps())) is not None
    assert checks["window"]({**json.loads(window().dumps()), "v": 2}) is not None
    # what a newer v1 server adds is allowed
    assert checks["window"]({**json.loads(window().dumps()), "something_new": [1]}) is None


@pytest.mark.parametrize("request_text, valid", [
    ('{"type": "start", "source": "a.mp4"}', True),
    ('{"type": "start", "source": "a.mp4", "stream": "cam-1", "realtime": false, "extra": 1}', True),
    ('{"type": "subscribe", "stream": "cam", "since": 30}', True),
    ('{"type": "list"}', True),
    ('{"type": "webrtc_offer", "sdp": "v=0"}', True),
    ('{"type": "start"}', False),
    ('{"type": "subscribe", "stream": "../x"}', False),
    ('{"type": "subscribe", "stream": "cam", "since": -1}', False),
    ('{"type": "start", "source": "a", "realtime": "yes"}', False),
    ('{"type": "jump"}', False),
])
def test_requests_validate_exactly_when_the_server_accepts_them(request_text, valid):
    assert VALIDATOR.is_valid(json.loads(request_text)) == valid
    if valid:
        parse_request(request_text)
    else:
        with pytest.raises(ValueError):
            parse_request(request_text)
