"""Check documents against the shipped JSON Schemas and word every violation for a planner.

Valid documents take the fast path (fastjsonschema, compiled once); only a document that fails is
checked again with jsonschema to collect *every* error with its path.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

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
    except Exception:  # noqa: BLE001  (non-JSON values, dates, sets, may trip the compiled code: take the slow path)
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
    "^[a-z0-9][a-z0-9_.@-]{0,62}$": ("a name of lowercase letters, digits, '_', '.', '@' and '-'", "e.g. tomcat"),
    "^[a-z][a-z0-9_-]{0,31}$": ("an OS family: the distribution's name in lowercase",
                                "e.g. debian, ubuntu, rocky, openeuler, kylin"),
    "^[0-9A-Za-z][0-9A-Za-z._-]{0,31}$": ("an OS version such as 12 or 22.04", 'quote versions: version: "12"'),
    "^[A-Za-z0-9][A-Za-z0-9.+_:~-]{0,127}$": ("a package name as the OS package manager spells it",
                                              "e.g. nginx, tomcat9, openjdk-17-jre-headless"),
    "^[a-z0-9][a-z0-9_.@-]{0,62}/[a-z0-9][a-z0-9_.@-]{0,62}$": (
        "<service>/<check>", "name a declared health check, e.g. ready_check: tomcat/http"),
    "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$": ("an Ansible role name", "e.g. ansible_role: hrss_si_app"),
}
#: per field (the last one or two keys of the path), where one pattern serves fields that need different words
_FIELD_HINTS = {
    "directories.path": ("an absolute path", "service directories start with '/', e.g. /opt/tomcat"),
    "runtime": ("an absolute path", "runtime files are named by absolute path, e.g. /run/tomcat.pid"),
    "http.path": ("an HTTP path starting with '/'", "e.g. path: /health"),
    "services.name": ("a service name of lowercase letters, digits, '_', '.', '@' and '-'", "e.g. tomcat or nginx"),
    "checks.name": ("a check name of lowercase letters, digits, '_', '.', '@' and '-'", "e.g. http or ready"),
}
_UNIT_CHARS = re.compile(r"[^A-Za-z0-9:_.@-]+")
_UNIT_SUFFIXES = (".service", ".socket", ".target")
#: ``oneOf`` of single required keys: (what the object is, what it lacks, how to add it)
_ONE_OF = {
    frozenset({"systemd", "commands"}): (
        "service", "control",
        "add 'systemd: <unit>' (e.g. systemd: tomcat.service) or 'commands: {start: ..., stop: ...}'"),
    frozenset({"http", "tcp", "command"}): (
        "health check", "probe", ("add one of 'http: {port: 8080, path: /health}', 'tcp: {port: ...}' or "
                                  "'command: {run: ...}'")),
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
        elif expected == "string" and isinstance(raw, str) and isinstance(inst, (int, float)) \
                and not isinstance(inst, bool):
            if raw != str(inst):
                msg += f" (YAML reads unquoted {raw} as {inst})"
            hint = f'quote it: "{raw}"'
    elif kw == "pattern":
        msg, hint = _pattern(path, err.validator_value, inst)
    elif kw in ("minimum", "maximum", "exclusiveMinimum"):
        bound = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than"}[kw]
        msg = f"must be {bound} {err.validator_value}, got {inst!r}"
        if path and str(path[-1]).endswith("_s"):
            hint = "a duration in seconds, more than 0 and at most 86400 (a day)"
    elif kw == "oneOf" and frozenset(_one_of_keys(err.validator_value)) in _ONE_OF:
        # not a mapping: its type error says so; "valid under each of {'required': ...}" would only confuse
        return [_one_of(doc, path, inst, _one_of_keys(err.validator_value))] if isinstance(inst, dict) else []
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


def _pattern(path: tuple[PathElem, ...], pattern: str, value: Any) -> tuple[str, str]:
    """(message, hint) for a value that does not match ``pattern``, in the words of its field."""
    if path and path[-1] == "systemd" and isinstance(value, str):
        return _unit_problem(value)
    names = [p for p in path if isinstance(p, str)]
    words = _FIELD_HINTS.get(".".join(names[-2:])) or _FIELD_HINTS.get(names[-1] if names else "")
    expected_s, hint = words or _PATTERN_HINTS.get(pattern, (f"text matching {pattern}", ""))
    return f"expected {expected_s}, got {value!r}", hint


def _unit_problem(unit: str) -> tuple[str, str]:
    """Say what is wrong with a systemd unit name, and what it probably should be."""
    fixed = _UNIT_CHARS.sub("-", unit.strip()).strip("-") or "my-app"
    if not fixed.endswith(_UNIT_SUFFIXES):
        fixed += ".service"
    if any(ch.isspace() for ch in unit):
        return f"systemd unit {unit!r} has a space", f"name the unit as systemctl shows it, e.g. {fixed}"
    if not unit.endswith(_UNIT_SUFFIXES):
        return (f"systemd unit {unit!r} lacks its type suffix (.service, .socket or .target)",
                f"name the unit as systemctl shows it, e.g. {fixed}")
    return (f"systemd unit {unit!r} has a character systemd does not allow in a unit name",
            f"unit names use letters, digits and ':', '_', '.', '@', '-', e.g. {fixed}")


def _one_of_keys(alternatives: Any) -> tuple[str, ...]:
    """The keys of a ``oneOf`` whose every branch only requires one key, in schema order (else none)."""
    keys: list[str] = []
    for branch in alternatives if isinstance(alternatives, list) else []:
        required = branch.get("required") if isinstance(branch, dict) and set(branch) == {"required"} else None
        if not isinstance(required, list) or len(required) != 1:
            return ()
        keys.append(required[0])
    return tuple(keys)


def _one_of(doc: YamlDocument, path: tuple[PathElem, ...], inst: dict[str, Any], keys: tuple[str, ...]) -> Diagnostic:
    """A service without a control (or with two), a health check without a probe (or with two)."""
    subject, part, fix = _ONE_OF[frozenset(keys)]
    name = f"{subject} '{inst['name']}'" if isinstance(inst.get("name"), str) else subject
    present = [k for k in inst if k in keys]
    if not present:
        listed = ", ".join(f"'{k}'" for k in keys[:-1]) + f" or '{keys[-1]}'"
        return Diagnostic(doc.locate(path), format_path(path), f"{name} has no {part}: it needs {listed}", fix)
    both = " and ".join(f"'{k}'" for k in present)
    second = (*path, present[1])
    return Diagnostic(doc.locate(second, key=True), format_path(second), f"{name} has {both}: it takes exactly one "
                      f"{part}", f"keep the {part} that runs it in production and remove the other")


def _enum_subject(path: tuple[PathElem, ...]) -> str:
    names = [p for p in path if isinstance(p, str)]
    last = names[-1] if names else "value"
    return {"days": "day", "role": "region role", "mode": "replication mode"}.get(last, last)
