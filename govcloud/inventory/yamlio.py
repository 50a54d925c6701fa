"""Read YAML the strict way: UTF-8 only, no duplicate keys, bounded alias expansion, marks kept.

PyYAML silently keeps the last of two equal keys and happily builds a "billion laughs" graph; a
planner's typo must not become a silent change, and a hostile file must not exhaust memory. So we
compose the node tree with libyaml (``CSafeLoader``, marks included) and construct plain Python data
ourselves, keeping the root node so any error can be mapped back to ``file:line:col``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from govcloud.errors import Diagnostic, Location

try:  # libyaml is ~8x faster than the pure-Python loader on large inventories
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_FILE_BYTES = 64 * 1024 * 1024
MIN_EXPANSION_BUDGET = 100_000  # expanded nodes allowed regardless of file size
EXPANSION_FACTOR = 10  # ... or this many times the distinct nodes, whichever is larger

PathElem = str | int
_SCALAR_CONSTRUCTOR = yaml.SafeLoader("")  # only used for its tag-aware scalar constructors


@dataclass(frozen=True)
class YamlDocument:
    """One parsed file: its display name, the plain data, and the node tree for error locations."""

    name: str
    data: Any
    root: yaml.Node | None
    raw: bytes

    def locate(self, path: tuple[PathElem, ...], *, key: bool = False) -> Location:
        """The location of the node at ``path`` (of its key when ``key``), or the deepest ancestor found."""
        node = self.root
        if node is None:
            return Location(self.name, 1, 1)
        mark = node.start_mark
        for elem in path:
            found: yaml.Node | None = None
            key_node: yaml.Node | None = None
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    if isinstance(k, yaml.ScalarNode) and k.value == str(elem):
                        found, key_node = v, k
            elif isinstance(node, yaml.SequenceNode) and isinstance(elem, int) and 0 <= elem < len(node.value):
                found = node.value[elem]
            if found is None:
                break
            node = found
            mark = (key_node.start_mark if key and key_node is not None and elem == path[-1] else found.start_mark)
        return Location(self.name, mark.line + 1, mark.column + 1)

    def node_at(self, path: tuple[PathElem, ...]) -> yaml.Node | None:
        node = self.root
        for elem in path:
            if isinstance(node, yaml.MappingNode):
                node = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(elem)), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(elem, int) and 0 <= elem < len(node.value):
                node = node.value[elem]
            else:
                return None
            if node is None:
                return None
        return node


def format_path(path: tuple[PathElem, ...] | list[PathElem]) -> str:
    """``('systems', 3, 'depends_on', 0)`` -> ``systems[3].depends_on[0]``."""
    out = ""
    for elem in path:
        if isinstance(elem, int):
            out += f"[{elem}]"
        else:
            out += f".{elem}" if out else str(elem)
    return out


_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_MERGE = "tag:yaml.org,2002:merge"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"


class _RecursiveAlias(Exception):
    def __init__(self, node: yaml.Node) -> None:
        super().__init__("recursive alias")
        self.node = node


class _Builder:
    """Turns a composed node graph into dicts/lists/scalars, reporting problems as diagnostics.

    Nodes reached again through an alias are built once and shared (as PyYAML does), while the
    *expanded* size is counted, so a billion-laughs file is measured without being expanded.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.diagnostics: list[Diagnostic] = []
        self._memo: dict[int, tuple[Any, int]] = {}
        self._in_progress: set[int] = set()
        self.scalars = 0

    def error(self, node: yaml.Node, path: tuple[PathElem, ...], message: str, hint: str = "") -> None:
        loc = Location(self.name, node.start_mark.line + 1, node.start_mark.column + 1)
        self.diagnostics.append(Diagnostic(loc, format_path(path), message, hint))

    @property
    def distinct(self) -> int:
        """Containers and scalars as written in the file (aliases not counted again)."""
        return len(self._memo) + self.scalars

    def build(self, node: yaml.Node, path: tuple[PathElem, ...]) -> tuple[Any, int]:
        """(value, expanded node count) of ``node``."""
        if isinstance(node, yaml.ScalarNode):
            self.scalars += 1
            tag = node.tag
            if tag == _STR:
                return node.value, 1
            try:
                if tag == _INT:
                    return _SCALAR_CONSTRUCTOR.construct_yaml_int(node), 1
                return _SCALAR_CONSTRUCTOR.construct_object(node, deep=True), 1
            except (yaml.YAMLError, ValueError, TypeError) as exc:
                problem = getattr(exc, "problem", None) or str(exc)
                self.error(node, path, f"cannot read value {node.value!r} with tag {tag}: {problem}",
                           "remove the tag (e.g. '!!binary'): inventories hold plain strings, numbers and lists")
                return None, 1
        if node.tag not in (_SEQ, _MAP):
            self.error(node, path, f"unsupported tag {node.tag}",
                       "remove the tag: inventories hold plain mappings and lists")
        key = id(node)
        cached = self._memo.get(key)
        if cached is not None:
            return cached
        if key in self._in_progress:
            raise _RecursiveAlias(node)
        self._in_progress.add(key)
        if isinstance(node, yaml.SequenceNode):
            value: Any = []
            size = 1
            for i, child in enumerate(node.value):
                v, n = self.build(child, (*path, i))
                value.append(v)
                size += n
        else:
            value, size = self._mapping(node, path)  # type: ignore[arg-type]
        self._in_progress.discard(key)
        self._memo[key] = (value, size)
        return value, size

    def _mapping(self, node: yaml.MappingNode, path: tuple[PathElem, ...]) -> tuple[dict[Any, Any], int]:
        result: dict[Any, Any] = {}
        first_seen: dict[Any, yaml.Node] = {}
        size = 1
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for src in sources:
                    if isinstance(src, yaml.MappingNode):
                        merged.extend(src.value)
                    else:
                        self.error(src, path, "a merge key (<<) must refer to a mapping")
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.error(key_node, path, "a mapping key must be a plain string, not a list or mapping")
                continue
            key = key_node.value
            if key in first_seen:
                first = first_seen[key]
                self.error(
                    key_node,
                    (*path, key),
                    f"duplicate key '{key}' (first defined at line {first.start_mark.line + 1})",
                    "YAML keeps only the last of two equal keys; delete or rename one of them",
                )
                continue
            first_seen[key] = key_node
            result[key], n = self.build(value_node, (*path, key))
            size += n + 1
        for key_node, value_node in merged:  # explicit keys win over merged ones
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key not in result:
                result[key], n = self.build(value_node, (*path, key))
                size += n + 1
        return result, size


def _decode(raw: bytes, name: str) -> tuple[str | None, Diagnostic | None]:
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        return None, Diagnostic(
            Location(name, line, column),
            "",
            f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
            "save the file as UTF-8 (e.g. `iconv -f GB18030 -t UTF-8`); Chinese names must be UTF-8",
        )


def parse_yaml(raw: bytes, name: str) -> tuple[YamlDocument | None, list[Diagnostic]]:
    """Parse one file's bytes. Returns the document (None if unusable) and every problem found."""
    if len(raw) > MAX_FILE_BYTES:
        return None, [Diagnostic(Location(name), "", f"file is larger than {MAX_FILE_BYTES // 2**20} MiB",
                                 "split it: one file per department")]
    text, problem = _decode(raw, name)
    if problem is not None or text is None:
        return None, [problem] if problem else []
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(name, mark.line + 1, mark.column + 1) if mark else Location(name)
        context = exc.context or ""
        if context and exc.context_mark is not None and mark is not None and exc.context_mark.line != mark.line:
            context += f" (started at line {exc.context_mark.line + 1})"
        what = " ".join(p for p in (context, exc.problem) if p)
        return None, [Diagnostic(loc, "", f"malformed YAML: {what}",
                                 "check indentation, quoting and colons near this line (values with ': ' need quotes)")]
    except yaml.YAMLError as exc:
        return None, [Diagnostic(Location(name), "", f"malformed YAML: {exc}", "check the file's syntax")]
    if root is None:
        return None, [Diagnostic(Location(name, 1, 1), "", "file is empty",
                                 "write the inventory (see docs/inventory.md) or delete the file")]
    builder = _Builder(name)
    try:
        data, total = builder.build(root, ())
    except _RecursiveAlias as exc:
        m = exc.node.start_mark
        return None, [Diagnostic(Location(name, m.line + 1, m.column + 1), "", "an alias refers to itself (recursive anchor)",
                                 "anchors (&x) may be reused (*x) but not inside themselves")]
    except RecursionError:
        return None, [Diagnostic(Location(name, 1, 1), "", "the document nests too deeply",
                                 "inventories need only a few levels of nesting")]
    budget = max(MIN_EXPANSION_BUDGET, EXPANSION_FACTOR * builder.distinct)
    if total > budget:
        return None, [Diagnostic(Location(name, 1, 1), "",
                                 f"aliases expand to {total:,} nodes from {builder.distinct:,} written (limit {budget:,}): "
                                 "refusing a possible YAML bomb",
                                 "write the data out instead of nesting anchors (&x) and aliases (*x)")]
    doc = YamlDocument(name=name, data=data, root=root, raw=raw)
    return doc, builder.diagnostics
