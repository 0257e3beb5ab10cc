"""Shared by the loaders of policy files (profiles, authorisation rules): problems collected with
the exact field path, so one pass reports every mistake in a file an operator edits by hand."""

from __future__ import annotations

import difflib
from typing import Any

import yaml

from policies.errors import ProfileProblem


class Check:
    """Problems found so far; validators report here and return None for a bad field."""

    def __init__(self) -> None:
        self.problems: list[ProfileProblem] = []

    def fail(self, path: str, reason: str) -> None:
        self.problems.append(ProfileProblem(path, reason))


def child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def describe(value: object) -> str:
    """A value as an error message shows it: short, and never a whole nested structure."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def fields(check: Check, value: object, path: str, *, required: tuple[str, ...],
           optional: tuple[str, ...] = (), top_level: str = "must be a mapping",
           ) -> dict[str, Any] | None:
    """A mapping with exactly the known keys: unknown ones (with a spelling hint) and missing
    required ones reported. ``top_level`` words the complaint about a document that is not a
    mapping at all."""
    if not isinstance(value, dict):
        what = "must be a mapping" if path else top_level
        check.fail(path, f"{what}, got {describe(value)}")
        return None
    known = (*required, *optional)
    for key in value:
        if key not in known:
            hint = ""
            if isinstance(key, str):
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
            check.fail(path, f"unknown field {describe(key)}{hint}")
    for key in required:
        if key not in value:
            check.fail(child(path, key), "required field is missing")
    return {k: v for k, v in value.items() if k in known}


def duplicate_keys(root: yaml.Node | None) -> list[ProfileProblem]:
    """Duplicate mapping keys, which ``yaml.safe_load`` would silently resolve to the last."""
    problems: list[ProfileProblem] = []
    stack: list[tuple[yaml.Node, str]] = [(root, "")] if root is not None else []
    visited: set[int] = set()
    while stack:
        node, path = stack.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[tuple[str, str]] = set()
            for key_node, value_node in node.value:
                sub = path
                if isinstance(key_node, yaml.ScalarNode):
                    sub = child(path, str(key_node.value))
                    if key_node.tag != "tag:yaml.org,2002:merge":
                        marker = (key_node.tag, str(key_node.value))
                        if marker in keys:
                            problems.append(ProfileProblem(
                                path, f"duplicate key {key_node.value!r} "
                                      f"(line {key_node.start_mark.line + 1})",
                            ))
                        keys.add(marker)
                stack.append((value_node, sub))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value))
    return problems
