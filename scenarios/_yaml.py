"""A YAML loader that keeps the line of every node, so validation errors can name it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ScenarioError

__all__ = ["Marks", "load_with_marks"]

Path_ = tuple[str | int, ...]


class Marks:
    """Line numbers (1-based) of the values and keys of a loaded YAML document, by path."""

    def __init__(self) -> None:
        self.values: dict[Path_, int] = {}
        self.keys: dict[Path_, int] = {}

    def line(self, path: Path_) -> int | None:
        """Line of the deepest node of ``path`` that exists (a key's line for unknown fields)."""
        path = tuple(path)
        while True:
            if path in self.keys:
                return self.keys[path]
            if path in self.values:
                return self.values[path]
            if not path:
                return None
            path = path[:-1]


def _convert(node: yaml.Node, loader: yaml.SafeLoader, path: Path_, marks: Marks) -> Any:
    marks.values[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<) like SafeLoader does
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool):
                raise ScenarioError.single(
                    "?", "mapping keys must be scalars", line=key_node.start_mark.line + 1
                )
            if key in out:
                # PyYAML keeps the last value silently; a repeated key is a mistake.
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            child = (*path, str(key) if not isinstance(key, int) else key)
            marks.keys[child] = key_node.start_mark.line + 1
            out[key] = _convert(value_node, loader, child, marks)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, loader, (*path, i), marks) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def load_with_marks(text: str, file: str | Path) -> tuple[Any, Marks]:
    """Parse one YAML document; returns the plain data and the line of every node.

    YAML syntax errors become a :class:`ScenarioError` naming the file and line.
    """
    loader = yaml.SafeLoader(text)
    marks = Marks()
    try:
        node = loader.get_single_node()
        if node is None:
            raise ScenarioError.single(file, "the file is empty; expected a mapping", line=1)
        return _convert(node, loader, (), marks), marks
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ScenarioError.single(file, f"YAML syntax error: {problem}", line=line) from exc
    except yaml.YAMLError as exc:
        raise ScenarioError.single(file, f"YAML error: {exc}") from exc
    finally:
        loader.dispose()
