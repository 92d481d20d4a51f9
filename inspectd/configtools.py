"""Typed configuration: dataclasses filled from ``yaml.safe_load`` output and validated.

Every subsystem declares its section as a dataclass with defaults; ``from_mapping``
fills it, checking each key's type, and raises ``InspectdError`` naming the file, the
dotted key and what was expected. Unknown keys are errors (a typo must not be silently
ignored). Extra checks (ranges, one-of) go in a ``validate(self, where)`` method, which is
called after the fields are filled and should raise ``ConfigError`` via ``fail``.
"""
from __future__ import annotations

import dataclasses
import enum
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, get_args, get_origin, get_type_hints

import yaml

from inspectd.errors import ConfigError, InspectdError  # noqa: F401 - ConfigError is imported from here too

T = TypeVar("T")


def fail(where: str, key: str, message: str) -> typing.NoReturn:
    raise ConfigError(f"{where}: {key}: {message}")


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names one key twice (plain YAML lets the last one win, silently)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping.

    A section written twice (two ``ring:`` blocks) is the same error one level up: the
    second block would silently replace the first. Merge keys (``<<``) keep YAML's meaning.
    """

    def construct_document(self, node: yaml.Node) -> Any:
        self._check_unique(node, "", set())
        return super().construct_document(node)

    def _check_unique(self, node: yaml.Node, path: str, visited: set[int]) -> None:
        if id(node) in visited:           # an alias: checked where it was defined
            return
        visited.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._check_unique(item, f"{path}[{i}]", visited)
        elif isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True) if isinstance(key_node, yaml.ScalarNode) \
                    else key_node.start_mark.index
                dotted = f"{path}.{key}" if path else str(key)
                first = seen.setdefault(key, key_node)
                if first is not key_node:
                    a, b = first.start_mark, key_node.start_mark
                    where = (f"line {a.line + 1} and line {b.line + 1}" if a.line != b.line else
                             f"line {a.line + 1}, columns {a.column + 1} and {b.column + 1}")
                    raise DuplicateKeyError(f"{dotted}: given twice, at {where} (only one may stay)")
                self._check_unique(value_node, dotted, visited)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)   # noqa: S506 - a SafeLoader subclass
    except DuplicateKeyError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{at}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin in (list, tuple):
        return f"a list of {_type_name(get_args(tp)[0])}" if get_args(tp) else "a list"
    if origin is dict:
        return f"a mapping to {_type_name(get_args(tp)[1])}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _convert(tp: Any, value: Any, where: str, key: str) -> Any:
    origin = get_origin(tp)
    bad = lambda: fail(where, key, f"expected {_type_name(tp)}, got {value!r}")  # noqa: E731
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where, key)
            except ConfigError:
                continue
        bad()
    if origin is Literal:
        if value in get_args(tp):
            return value
        bad()
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            bad()
        return from_mapping(cast(type, tp), value, where, prefix=key)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            bad()
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            bad()
        (item,) = get_args(tp)[:1] or (Any,)
        out = [_convert(item, v, where, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            bad()
        _, vt = get_args(tp)
        return {str(k): _convert(vt, v, where, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        bad()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        bad()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        bad()
    if tp is str:
        if isinstance(value, str):
            return value
        bad()
    if tp is Path:
        if isinstance(value, str):
            return Path(value)
        bad()
    raise TypeError(f"configtools cannot handle type {tp!r} at {key}")


def from_mapping(cls: type[T], data: dict[str, Any] | None, where: str, prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; ``where`` names the file for errors."""
    data = dict(data or {})
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cast(Any, cls)) if f.init}
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in fields:
            known = ", ".join(sorted(fields)) or "none"
            fail(where, key, f"unknown key (known keys here: {known})")
        kwargs[name] = _convert(hints[name], value, where, key)
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            fail(where, f"{prefix}.{name}" if prefix else name, "required key is missing")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate(where, prefix)
    return obj


def to_mapping(obj: Any) -> Any:
    """The inverse of ``from_mapping``: plain dicts, lists and scalars for YAML/JSON."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_mapping(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (list, tuple)):
        return [to_mapping(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_mapping(v) for k, v in obj.items()}
    return obj


def doc(text: str, **kw: Any) -> Any:
    """``field(..., metadata={'doc': text})``: the text the config reference prints."""
    meta = {"doc": text}
    return dataclasses.field(metadata=meta, **kw)
