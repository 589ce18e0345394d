"""The JSON Schema (draft 2020-12) of the websocket protocol, version 1, generated from protocol.py's types.

    python -m protocol_schema --write        # regenerates docs/protocol.schema.json
    python -m protocol_schema                # prints it

`$defs/ServerMessage` is every server → client message (one of, by `type`), `$defs/ClientRequest` every client →
server request; the schema itself accepts either. Objects allow properties beyond those listed: version 1 grows by
additions. tests/test_protocol_schema.py fails when the committed file is not what this makes now, and
tests/conftest.py checks every message a server sends in the tests against the committed file.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Union

from protocol import (
    CLIENT_REQUESTS,
    MAX_SINCE_S,
    PROTOCOL_VERSION,
    SERVER_MESSAGES,
    STREAM_ID,
)

SCHEMA_PATH = Path(__file__).resolve().parent / "docs" / "protocol.schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"

# What parse_request checks beyond the requests' types (the types cannot say it without pydantic at run time).
REQUEST_STRING_CONSTRAINTS: dict[str, dict[str, Any]] = {
    "stream": {"pattern": f"^{STREAM_ID.pattern}$"},
    "source": {"minLength": 1},
    "sdp": {"minLength": 1},
}
REQUEST_NUMBER_CONSTRAINTS: dict[str, dict[str, Any]] = {"since": {"minimum": 0, "maximum": MAX_SINCE_S}}


def protocol_schema() -> dict[str, Any]:
    """The schema of every server message and client request, from protocol.py's dataclasses and TypedDicts."""
    from pydantic import TypeAdapter
    from pydantic.json_schema import GenerateJsonSchema

    class WithoutFieldTitles(GenerateJsonSchema):
        def field_title_should_be_set(self, schema) -> bool:  # "title": "T Start" on every field says nothing
            return False

    messages = tuple(SERVER_MESSAGES.values())
    # a Union of a tuple made at run time: `X | Y` has no spelling for it
    generated = TypeAdapter(Union[messages + CLIENT_REQUESTS]).json_schema(  # noqa: UP007
        schema_generator=WithoutFieldTitles)
    defs: dict[str, Any] = generated["$defs"]
    for message in messages:
        # `type` is a ClassVar of the dataclass and `v` is added by Message.to_json: neither is a field
        schema = defs[message.__name__]
        schema["properties"] = {"type": {"const": message.type, "type": "string"},
                                "v": {"const": PROTOCOL_VERSION, "type": "integer"}, **schema["properties"]}
        schema["required"] = ["type", "v", *schema.get("required", [])]
    for request in CLIENT_REQUESTS:
        for name, field in defs[request.__name__]["properties"].items():
            _constrain(field, "string", REQUEST_STRING_CONSTRAINTS.get(name, {}))
            _constrain(field, "number", REQUEST_NUMBER_CONSTRAINTS.get(name, {}))
    for schema in defs.values():
        _open_objects(schema)
        if "description" in schema:
            schema["description"] = re.sub(r"\s+", " ", schema["description"]).strip()
    defs["ServerMessage"] = _one_of_by_type("A server → client message.",
                                            {m.type: m.__name__ for m in messages})
    defs["ClientRequest"] = _one_of_by_type("A client → server request.",
                                            {defs[r.__name__]["properties"]["type"]["const"]: r.__name__
                                             for r in CLIENT_REQUESTS})
    return {
        "$schema": DIALECT,
        "title": f"vidsent websocket protocol, version {PROTOCOL_VERSION}",
        "description": "One JSON object per websocket text message: a server message (`$defs/ServerMessage`) or a "
                       "client request (`$defs/ClientRequest`). Generated from protocol.py by "
                       "`python -m protocol_schema --write`; README \"Websocket protocol (version 1)\" says what "
                       "each field means.",
        "oneOf": [{"$ref": "#/$defs/ServerMessage"}, {"$ref": "#/$defs/ClientRequest"}],
        "$defs": dict(sorted(defs.items())),
    }


def _constrain(field: dict[str, Any], json_type: str, constraints: dict[str, Any]) -> None:
    """Adds constraints to the `json_type` branch of a field (itself, or one of its anyOf for a nullable one)."""
    for branch in field.get("anyOf", [field]):
        if branch.get("type") == json_type:
            branch.update(constraints)


def _open_objects(schema: Any) -> None:
    """Says outright that every object may carry more properties (code generators of other languages read a
    missing additionalProperties differently)."""
    if isinstance(schema, dict):
        if schema.get("type") == "object":
            schema.setdefault("additionalProperties", True)
        for value in schema.values():
            _open_objects(value)
    elif isinstance(schema, list):
        for value in schema:
            _open_objects(value)


def _one_of_by_type(description: str, names: dict[str, str]) -> dict[str, Any]:
    mapping = {kind: f"#/$defs/{name}" for kind, name in names.items()}
    return {"description": description, "oneOf": [{"$ref": ref} for ref in mapping.values()],
            # OpenAPI's keyword, which code generators use to pick the type; JSON Schema validators ignore it
            "discriminator": {"propertyName": "type", "mapping": mapping}}


def schema_text() -> str:
    """The schema as committed in docs/protocol.schema.json."""
    return json.dumps(protocol_schema(), indent=2, ensure_ascii=False) + "\n"


def message_checkers(schema: dict[str, Any] | None = None) -> dict[str, Callable[[dict], str | None]]:
    """Per server message `type`, a check of one received message against the schema (the committed file unless
    given): None when it is valid, else what is wrong. Each is compiled once and checks only its own type's
    branch, not every branch of the oneOf."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    schema = schema or json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    mapping = schema["$defs"]["ServerMessage"]["discriminator"]["mapping"]

    def checker(ref: str) -> Callable[[dict], str | None]:
        validator = Draft202012Validator({"$schema": DIALECT, "$defs": schema["$defs"], "$ref": ref})

        def check(message: dict) -> str | None:
            if validator.is_valid(message):
                return None
            error = best_match(validator.iter_errors(message))
            return f"{error.json_path}: {error.message}"
        return check

    return {kind: checker(ref) for kind, ref in mapping.items()}


def received_text_checker(schema: dict[str, Any] | None = None) -> Callable[[str], str | None]:
    """A check of a received websocket text message: what is wrong with it when it is a vidsent message (its
    `type` is a server message's) that the schema does not allow, else None."""
    checks = message_checkers(schema)

    def check(text: str) -> str | None:
        try:
            message = json.loads(text)
        except ValueError:
            return None
        check_type = checks.get(message.get("type")) if isinstance(message, dict) else None
        problem = check_type(message) if check_type else None
        return f"{message['type']} message {problem}: {text[:300]}" if problem else None

    return check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m protocol_schema", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write it to docs/protocol.schema.json, not stdout")
    args = parser.parse_args(argv)
    text = schema_text()
    if args.write:
        SCHEMA_PATH.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
