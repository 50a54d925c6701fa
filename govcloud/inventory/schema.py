"""Check documents against the shipped JSON Schemas and word every violation for a planner.

Valid documents take the fast path (fastjsonschema, compiled once); only a document that fails is
checked again with jsonschema to collect *every* error with its path.
"""

from __future__ import annotations

import difflib
import json
from functools import cache
from importlib import resources
from typing import Any, Callable

from govcloud.errors import Diagnostic
from govcloud.inventory.yamlio import PathElem, YamlDocument, format_path


@cache
def load_schema(name: str) -> dict[str, Any]:
    """A shipped schema by file stem: ``topology``, ``department`` or ``plan``."""
    text = resources.files("govcloud.schemas").joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _fast_validator(name: str) -> Callable[[Any], Any]:
    import fastjsonschema

    return fastjsonschema.compile(load_schema(name))  # type: ignore[no-any-return]


def _is_valid_fast(name: str, data: Any) -> bool:
    import fastjsonschema

    try:
        _fast_validator(name)(data)
    except fastjsonschema.JsonSchemaException:
        return False
    except Exception:  # non-JSON values (dates, sets) may trip the compiled code: take the slow path
        return False
    return True


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean", int: "a number", float: "a number", str: "a string",
        list: "a list", dict: "a mapping", type(None): "nothing (null)",
    }.get(type(value), type(value).__name__)


_EXPECTED = {"integer": "a whole number", "string": "a string", "object": "a mapping", "array": "a list",
             "number": "a number", "boolean": "true or false"}
_PATTERN_HINTS = {
    "^([01][0-9]|2[0-3]):[0-5][0-9]$": ('a time "HH:MM" (00:00 to 23:59)', 'quote times: start: "22:00"'),
    "^[a-z][a-z0-9-]{0,62}$": ("an id of lowercase letters, digits and '-', starting with a letter",
                               "e.g. hrss-si; ids are used in resource names and must be stable"),
    "^[a-z0-9][a-z0-9-]{0,62}$": ("a host name of lowercase letters, digits and '-'", "e.g. si-app-01"),
    "^/": ("an absolute path", "data paths start with '/', e.g. /srv/si"),
    "^sha256:[0-9a-f]{64}$": ("sha256:<64 hex digits>", "let `govcloud plan` write it"),
    "^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+$": (
        "an absolute zone name in lowercase, ending with a dot", "e.g. zone: svc.gdgov.internal. (mind the final dot)"),
    "^[0-9a-fA-F:.]+$": ("an IPv4 or IPv6 address", "e.g. address: 10.240.1.53"),
}


def schema_diagnostics(doc: YamlDocument, schema_name: str) -> list[Diagnostic]:
    """Every schema violation of ``doc`` as a diagnostic with file:line:col, or [] when valid."""
    if _is_valid_fast(schema_name, doc.data):
        return []
    import jsonschema

    schema = load_schema(schema_name)
    validator = jsonschema.Draft7Validator(schema)
    out: list[Diagnostic] = []
    for err in sorted(validator.iter_errors(doc.data), key=lambda e: [str(p) for p in e.absolute_path]):
        out.extend(_explain(doc, err))
    return out


def _explain(doc: YamlDocument, err: Any) -> list[Diagnostic]:
    path: tuple[PathElem, ...] = tuple(err.absolute_path)
    kw = err.validator
    inst = err.instance
    hint = ""
    if kw == "required":
        missing = [k for k in err.validator_value if isinstance(inst, dict) and k not in inst]
        return [Diagnostic(doc.locate(path), format_path(path), f"missing required key '{k}'",
                           f"add '{k}:' (required keys here: {', '.join(err.validator_value)})") for k in missing]
    if kw == "additionalProperties" and isinstance(inst, dict):
        allowed = sorted(err.schema.get("properties", {}))
        extras = [k for k in inst if k not in err.schema.get("properties", {})]
        out = []
        for k in extras:
            close = difflib.get_close_matches(str(k), allowed, n=1)
            h = f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join(allowed)}"
            out.append(Diagnostic(doc.locate((*path, k), key=True), format_path((*path, k)), f"unknown key '{k}'", h))
        return out
    if kw == "enum":
        choices = [str(c) for c in err.validator_value]
        close = difflib.get_close_matches(str(inst), choices, n=1)
        what = _enum_subject(path)
        msg = f"unknown {what} '{inst}'"
        hint = (f"did you mean '{close[0]}'? " if close else "") + f"valid values: {', '.join(choices)}"
    elif kw == "const" and path and path[-1] == "version":
        msg = f"unsupported version {inst!r}"
        hint = f"this govcloud reads version {err.validator_value}; convert the file or upgrade govcloud"
    elif kw == "type":
        expected = err.validator_value
        expected_s = _EXPECTED.get(expected, expected) if isinstance(expected, str) else " or ".join(expected)
        msg = f"expected {expected_s}, got {_type_name(inst)} {inst!r}" if not isinstance(inst, (dict, list)) \
            else f"expected {expected_s}, got {_type_name(inst)}"
        node = doc.node_at(path)
        raw = getattr(node, "value", None)
        if isinstance(raw, str) and ":" in raw and isinstance(inst, int):
            msg = f"expected {expected_s}, got {raw} (YAML 1.1 reads unquoted {raw} as the number {inst})"
            hint = f'quote it: "{raw}"'
    elif kw == "pattern":
        expected_s, hint = _PATTERN_HINTS.get(err.validator_value, (f"text matching {err.validator_value}", ""))
        msg = f"expected {expected_s}, got {inst!r}"
    elif kw in ("minimum", "maximum"):
        bound = "at least" if kw == "minimum" else "at most"
        msg = f"must be {bound} {err.validator_value}, got {inst!r}"
    elif kw == "minItems":
        msg = f"must list at least {err.validator_value} item(s)"
    elif kw == "minLength":
        msg = "must not be empty"
    elif kw == "uniqueItems":
        msg = "lists the same value twice"
        hint = "remove the repeated entry"
    elif kw == "minProperties":
        msg = f"must define at least {err.validator_value} entry"
    else:
        msg = err.message
    return [Diagnostic(doc.locate(path), format_path(path), msg, hint)]


def _enum_subject(path: tuple[PathElem, ...]) -> str:
    names = [p for p in path if isinstance(p, str)]
    last = names[-1] if names else "value"
    return {"days": "day", "role": "region role", "mode": "replication mode"}.get(last, last)
