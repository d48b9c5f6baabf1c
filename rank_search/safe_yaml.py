"""YAML read with limits: the one reader of user YAML (spaces, ``train --config``, ``--ranks``
plan files, sweep records).

``yaml.safe_load`` runs no code, but it reads without bound: an alias bomb ("billion laughs")
composes into a few nodes that expand to 10^9 when anything walks them, and a 10,000-deep list
overflows the composer's recursion (a 3,000-line traceback). Here a document is refused, in one
``RankSearchError`` line naming the rule and the value, when

* the text is over ``MAX_BYTES``;
* it nests deeper than ``MAX_DEPTH`` levels (aliases expanded);
* its aliases expand it to more than ``MAX_NODES`` nodes, or an alias refers to itself.

Syntax errors stay ``yaml.YAMLError``, for the caller's own message. No torch, no ray.
"""
from __future__ import annotations

from typing import IO, Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from .errors import RankSearchError

MAX_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 64  # *our choice*: a space nests 4 levels, a sweep record 5
MAX_NODES = 200_000  # *our choice*: a plan file of a 1,000-layer model has about 10,000


class YAMLLimitError(RankSearchError):
    """A YAML document over one of the limits of this module."""


class _Loader(yaml.SafeLoader):
    """``SafeLoader`` that counts the nesting of what it composes (the composer recurses once per
    level, so counting there stops a deep document before Python's recursion limit)."""

    what = "YAML"

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):  # noqa: D401 - PyYAML's hook
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YAMLLimitError(f"{self.what} nests deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: Node, what: str) -> None:
    """Size and depth of the document with every alias expanded, measured on the node graph
    (each node once, iteratively: an alias chain may be longer than Python's recursion limit)."""
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, expanded depth)
    path: set[int] = set()  # nodes whose children are being measured: an alias to one is a cycle
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            kids = _children(node)
            size = 1 + sum(measured[id(k)][0] for k in kids)
            depth = 1 + max((measured[id(k)][1] for k in kids), default=0)
            if size > MAX_NODES:
                raise YAMLLimitError(f"{what} expands its aliases to more than {MAX_NODES:,} nodes (an alias bomb?)")
            if depth > MAX_DEPTH:
                raise YAMLLimitError(f"{what} nests deeper than {MAX_DEPTH} levels once its aliases are expanded")
            measured[key] = (size, depth)
            path.discard(key)
            continue
        if key in measured:
            continue
        path.add(key)
        stack.append((node, True))
        for kid in _children(node):
            if id(kid) in path:
                raise YAMLLimitError(f"{what} holds an alias that refers to itself")
            if id(kid) not in measured:
                stack.append((kid, False))


def load(source: str | bytes | IO, *, what: str = "YAML") -> Any:
    """The data of one YAML document (``yaml.safe_load``'s), within the limits above.

    Args:
        source: the text, or an open file (read up to ``MAX_BYTES``).
        what: how errors name the document, e.g. ``"search space file 'x.yaml'"``.

    Raises:
        YAMLLimitError: (a ``RankSearchError``) over a limit.
        yaml.YAMLError: not valid YAML.
    """
    text = source if isinstance(source, (str, bytes)) else source.read(MAX_BYTES + 1)
    if len(text) > MAX_BYTES:
        raise YAMLLimitError(f"{what} is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    loader = _Loader(text)
    loader.what = what
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, what)
        return loader.construct_document(node)
    finally:
        loader.dispose()
