"""Small checkers for JSON-shaped input that raise ``InputError`` naming the file, the field and the fix.

Templates and task requests come from users' files; an error has to say which file, which field (as a
dotted path such as ``Resources.thing.Type``) and which values would have been accepted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from harness.errors import InputError

THING_NAME_RE = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")
# Thing-group names (and so component-template names) must not contain colons or non-ASCII characters.
GROUP_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


def fail(source: str | None, path: str, message: str, allowed: Iterable[object] | None = None) -> NoReturn:
    """Raise an ``InputError`` in the one message shape every cloud-side input error uses."""
    where = f"{source}: " if source else ""
    field = f"{path}: " if path else ""
    text = f"{where}{field}{message}"
    if allowed is not None:
        text += "; allowed values: " + ", ".join(str(a) for a in allowed)
    raise InputError(text)


def join(path: str, key: str | int) -> str:
    """Extend a field path: ``join("Resources", "thing")`` -> ``Resources.thing``; ints become ``[i]``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def expect_object(value: object, source: str | None, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        fail(source, path, f"expected a JSON object, got {type_name(value)}")
    return value


def expect_list(value: object, source: str | None, path: str, *, non_empty: bool = False) -> list[Any]:
    if not isinstance(value, list):
        fail(source, path, f"expected a JSON array, got {type_name(value)}")
    if non_empty and not value:
        fail(source, path, "must not be empty")
    return value


def expect_str(value: object, source: str | None, path: str, *, non_empty: bool = True) -> str:
    if not isinstance(value, str):
        fail(source, path, f"expected a string, got {type_name(value)}")
    if non_empty and not value:
        fail(source, path, "must not be empty")
    return value


def expect_bool(value: object, source: str | None, path: str) -> bool:
    if not isinstance(value, bool):
        fail(source, path, f"expected true or false, got {type_name(value)}", ["true", "false"])
    return value


def expect_int(
    value: object, source: str | None, path: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """An integer; numeric strings are accepted because the seed's REST examples quote numbers."""
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        fail(source, path, f"expected an integer, got {type_name(value)}")
    if minimum is not None and value < minimum:
        fail(source, path, f"must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        fail(source, path, f"must be at most {maximum}, got {value}")
    return value


def expect_choice(value: object, source: str | None, path: str, allowed: Iterable[str]) -> str:
    choices = list(allowed)
    if not isinstance(value, str) or value not in choices:
        fail(source, path, f"unknown value {value!r}", choices)
    return value


def check_keys(
    obj: Mapping[str, Any],
    source: str | None,
    path: str,
    *,
    allowed: Iterable[str],
    required: Iterable[str] = (),
) -> None:
    """Reject unknown keys (typos) and missing required keys, listing the accepted names."""
    known = list(allowed)
    for key in obj:
        if key not in known:
            fail(source, join(path, key), "unknown field", sorted(known))
    for key in required:
        if key not in obj:
            fail(source, join(path, key), "required field is missing")


def check_thing_name(value: object, source: str | None, path: str) -> str:
    name = expect_str(value, source, path)
    if not THING_NAME_RE.match(name):
        fail(source, path, f"invalid thing name {name!r}: 1-128 characters of a-z A-Z 0-9 : _ -")
    return name


def check_group_name(value: object, source: str | None, path: str) -> str:
    name = expect_str(value, source, path)
    if not GROUP_NAME_RE.match(name):
        fail(source, path, f"invalid name {name!r}: 1-128 ASCII characters of a-z A-Z 0-9 _ - (no colon)")
    return name


def load_json_file(path: Path) -> Any:
    """Read a JSON document, turning a missing file or a syntax error into an ``InputError``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(str(path), "", f"cannot read file: {exc.strerror or exc}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(str(path), "", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")


def type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
