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


class _Builder:
    """Turns a composed node graph into dicts/lists/scalars, reporting problems as diagnostics."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.diagnostics: list[Diagnostic] = []
        self._memo: dict[int, Any] = {}

    def _loc(self, node: yaml.Node) -> Location:
        return Location(self.name, node.start_mark.line + 1, node.start_mark.column + 1)

    def error(self, node: yaml.Node, path: tuple[PathElem, ...], message: str, hint: str = "") -> None:
        self.diagnostics.append(Diagnostic(self._loc(node), format_path(path), message, hint))

    def build(self, node: yaml.Node, path: tuple[PathElem, ...]) -> Any:
        cached = self._memo.get(id(node))
        if cached is not None:
            return cached
        if isinstance(node, yaml.ScalarNode):
            value = _SCALAR_CONSTRUCTOR.construct_object(node, deep=True)
        elif isinstance(node, yaml.SequenceNode):
            value = [self.build(child, (*path, i)) for i, child in enumerate(node.value)]
        elif isinstance(node, yaml.MappingNode):
            value = self._mapping(node, path)
        else:  # pragma: no cover - composer yields only these three
            raise TypeError(node)
        if not isinstance(node, yaml.ScalarNode):
            self._memo[id(node)] = value
        return value

    def _mapping(self, node: yaml.MappingNode, path: tuple[PathElem, ...]) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        first_seen: dict[Any, yaml.Node] = {}
        pairs = list(node.value)
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in pairs:
            if key_node.tag == "tag:yaml.org,2002:merge":
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for src in sources:
                    if isinstance(src, yaml.MappingNode):
                        merged.extend(src.value)
                    else:
                        self.error(src, path, "a merge key (<<) must refer to a mapping")
        for key_node, value_node in pairs:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.error(key_node, path, "a mapping key must be a plain string, not a list or mapping")
                continue
            key = _SCALAR_CONSTRUCTOR.construct_object(key_node)
            if not isinstance(key, str):
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
            result[key] = self.build(value_node, (*path, key))
        for key_node, value_node in merged:  # explicit keys win over merged ones
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key not in result:
                result[key] = self.build(value_node, (*path, key))
        return result


def _expanded_size(root: yaml.Node) -> tuple[int, int, yaml.Node | None]:
    """(expanded node count, distinct node count, a node that refers to itself or None).

    Memoised per node, so a billion-laughs graph is measured in time linear in its distinct nodes.
    """
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()
    recursive: list[yaml.Node] = []

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in in_progress:
            recursive.append(node)
            return 0
        in_progress.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k) + size(v)
        in_progress.discard(key)
        sizes[key] = total
        return total

    # an explicit stack would avoid recursion limits; the composer already bounds nesting depth
    total = size(root)
    return total, len(sizes), recursive[0] if recursive else None


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
    total, distinct, recursive = _expanded_size(root)
    if recursive is not None:
        m = recursive.start_mark
        return None, [Diagnostic(Location(name, m.line + 1, m.column + 1), "", "an alias refers to itself (recursive anchor)",
                                 "anchors (&x) may be reused (*x) but not inside themselves")]
    budget = max(MIN_EXPANSION_BUDGET, EXPANSION_FACTOR * distinct)
    if total > budget:
        return None, [Diagnostic(Location(name, 1, 1), "",
                                 f"aliases expand to {total:,} nodes from {distinct:,} written (limit {budget:,}): "
                                 "refusing a possible YAML bomb",
                                 "write the data out instead of nesting anchors (&x) and aliases (*x)")]
    builder = _Builder(name)
    data = builder.build(root, ())
    doc = YamlDocument(name=name, data=data, root=root, raw=raw)
    return doc, builder.diagnostics
