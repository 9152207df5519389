"""YAML loading that remembers where every key and value stands, for errors a user can act on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Position:
    line: int  # 1-based
    column: int  # 1-based


class YamlError(Exception):
    def __init__(self, message: str, position: Position | None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


@dataclass
class Located:
    """A plain Python document plus the position of every path in it (keys and values)."""

    data: Any
    positions: dict[Path_, Position]
    key_positions: dict[Path_, Position]

    def where(self, path: Path_) -> Position | None:
        """The closest known position: the key of the deepest existing path prefix, else its value."""
        for n in range(len(path), -1, -1):
            prefix = tuple(path[:n])
            if prefix in self.key_positions:
                return self.key_positions[prefix]
            if prefix in self.positions:
                return self.positions[prefix]
        return None


def _pos(mark: yaml.Mark) -> Position:
    return Position(mark.line + 1, mark.column + 1)


def load_yaml(text: str, source: str = "<string>") -> Located:
    try:
        # libyaml's loader is ~10x faster and keeps marks; fall back to the pure-Python one.
        node = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        msg = f"{exc.problem or 'invalid YAML'}" + (f" ({exc.context})" if exc.context else "")
        raise YamlError(f"YAML syntax error: {msg}", _pos(mark) if mark else None) from None
    except yaml.YAMLError as exc:  # e.g. ReaderError: a control character or bad encoding in the file
        position = None
        if isinstance(exc, yaml.reader.ReaderError):
            line = text.count("\n", 0, exc.position) + 1
            position = Position(line, exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1)
        raise YamlError(f"YAML error: {exc}".splitlines()[0], position) from None
    positions: dict[Path_, Position] = {}
    key_positions: dict[Path_, Position] = {}
    if node is None:
        return Located({}, positions, key_positions)
    constructor = yaml.SafeLoader("")

    def build(n: yaml.Node, path: Path_) -> Any:
        positions[path] = _pos(n.start_mark)
        if isinstance(n, yaml.MappingNode):
            out: dict[str, Any] = {}
            for k, v in n.value:
                key = constructor.construct_object(k, deep=True)
                if not isinstance(key, str):
                    key = str(key)
                if key in out:
                    raise YamlError(f"duplicate key {key!r} (the first one would be silently lost)", _pos(k.start_mark))
                key_positions[(*path, key)] = _pos(k.start_mark)
                out[key] = build(v, (*path, key))
            return out
        if isinstance(n, yaml.SequenceNode):
            return [build(v, (*path, i)) for i, v in enumerate(n.value)]
        return constructor.construct_object(n, deep=True)

    try:
        data = build(node, ())
    except yaml.MarkedYAMLError as exc:  # e.g. a tag that safe loading refuses (!!python/object)
        mark = exc.problem_mark or exc.context_mark
        raise YamlError(f"YAML error: {exc.problem or exc}".splitlines()[0], _pos(mark) if mark else None) from None
    except (yaml.YAMLError, ValueError, TypeError) as exc:  # a scalar the safe constructor cannot convert
        raise YamlError(f"YAML error: {exc}".splitlines()[0], None) from None
    return Located(data, positions, key_positions)


def load_yaml_file(path: Path) -> Located:
    return load_yaml(path.read_text(encoding="utf-8"), str(path))
