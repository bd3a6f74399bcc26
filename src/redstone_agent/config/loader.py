"""Conversion of parsed TOML into typed dataclasses."""

from __future__ import annotations

import dataclasses
import enum
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from redstone_agent.errors import RedstoneError

T = TypeVar("T")


class ConfigError(RedstoneError):
    """A configuration file is missing, unparsable or does not match its schema."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")
        self.source = source
        self.key = key
        self.problem = problem


def load(path: Path | str, schema: type[T], *, section: str | None = None) -> T:
    """Read the TOML file at ``path`` into an instance of the dataclass ``schema``.

    With ``section``, only that top-level table is converted (other daemons'
    sections in the same file are left alone); errors still name the full key.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(str(path), "", "file not found") from None
    except PermissionError:
        raise ConfigError(str(path), "", "permission denied") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"not valid TOML ({exc})") from None
    if section is not None:
        if section not in data:
            raise ConfigError(str(path), section, "missing (expected a table)")
        data = data[section]
    return from_dict(data, schema, source=str(path), base_dir=path.parent, prefix=section or "")


def from_dict(
    data: dict[str, Any],
    schema: type[T],
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    prefix: str = "",
) -> T:
    """Convert a parsed TOML table into ``schema``.

    Relative paths stay as written unless ``base_dir`` is given, in which case
    they are taken relative to the config file's directory. ``prefix`` is the
    dotted key of ``data`` within its file, for error messages.
    """
    return _Converter(source, base_dir).dataclass(data, schema, prefix)


class _Converter:
    def __init__(self, source: str, base_dir: Path | None) -> None:
        self.source = source
        self.base_dir = base_dir

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.source, key or "(top level)", problem)

    def dataclass(self, value: Any, schema: type[T], key: str) -> T:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a table, got {_describe(value)}")
        hints = typing.get_type_hints(schema)
        fields = {f.name: f for f in dataclasses.fields(schema)}  # type: ignore[arg-type]
        toml_names = {name.replace("_", "-"): name for name in fields}
        unknown = [k for k in value if k not in fields and k not in toml_names]
        if unknown:
            known = ", ".join(sorted(fields))
            raise self.fail(_join(key, unknown[0]), f"unknown key (expected one of: {known})")
        kwargs: dict[str, Any] = {}
        for name, field in fields.items():
            sub_key = _join(key, name)
            if name in value:
                raw = value[name]
            elif name.replace("_", "-") in value:
                raw = value[name.replace("_", "-")]
            elif _has_default(field):
                continue
            else:
                raise self.fail(sub_key, f"missing (expected {_type_name(hints[name])})")
            kwargs[name] = self.value(raw, hints[name], sub_key)
        try:
            return schema(**kwargs)
        except (ValueError, TypeError) as exc:  # raised by __post_init__ validation
            raise self.fail(key, str(exc)) from None

    def value(self, raw: Any, hint: Any, key: str) -> Any:
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if hint is Any:
            return raw
        if origin in (typing.Union, types.UnionType):
            return self.union(raw, args, key)
        if origin is typing.Literal:
            if raw in args:
                return raw
            raise self.fail(key, f"expected one of {', '.join(map(repr, args))}, got {raw!r}")
        if origin in (list, tuple):
            return self.sequence(raw, origin, args, key)
        if origin is dict:
            if not isinstance(raw, dict):
                raise self.fail(key, f"expected a table, got {_describe(raw)}")
            return {k: self.value(v, args[1], _join(key, k)) for k, v in raw.items()}
        if dataclasses.is_dataclass(hint):
            return self.dataclass(raw, hint, key)  # type: ignore[arg-type]
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            try:
                return hint(raw)
            except ValueError:
                names = ", ".join(repr(m.value) for m in hint)
                raise self.fail(key, f"expected one of {names}, got {raw!r}") from None
        return self.scalar(raw, hint, key)

    def union(self, raw: Any, args: tuple[Any, ...], key: str) -> Any:
        # TOML has no null; Optional[X] only means "may be left out".
        options = [a for a in args if a is not type(None)]
        errors: list[ConfigError] = []
        for option in options:
            try:
                return self.value(raw, option, key)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise self.fail(key, f"expected {' or '.join(map(_type_name, options))}, got {raw!r}")

    def sequence(self, raw: Any, origin: type, args: tuple[Any, ...], key: str) -> Any:
        if not isinstance(raw, list):
            raise self.fail(key, f"expected an array, got {_describe(raw)}")
        item = args[0] if args else Any
        items = [self.value(v, item, f"{key}[{i}]") for i, v in enumerate(raw)]
        return tuple(items) if origin is tuple else items

    def scalar(self, raw: Any, hint: Any, key: str) -> Any:
        if hint is Path:
            if not isinstance(raw, str) or not raw:
                raise self.fail(key, f"expected a path, got {_describe(raw)}")
            path = Path(raw)
            if self.base_dir is not None and not path.is_absolute():
                path = self.base_dir / path
            return path
        if hint is bool:
            if isinstance(raw, bool):
                return raw
        elif hint is float:
            if isinstance(raw, int | float) and not isinstance(raw, bool):
                return float(raw)
        elif hint is int:
            if isinstance(raw, int) and not isinstance(raw, bool):
                return raw
        elif hint is str:
            if isinstance(raw, str):
                return raw
        else:
            raise self.fail(key, f"schema type {hint!r} is not supported")
        raise self.fail(key, f"expected {_type_name(hint)}, got {_describe(raw)}")


def _has_default(field: dataclasses.Field[Any]) -> bool:
    return (
        field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
    )


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _describe(value: Any) -> str:
    kind = {dict: "a table", list: "an array", bool: "a boolean", str: "a string"}.get(type(value))
    return kind or f"{type(value).__name__} {value!r}"


def _type_name(hint: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "a boolean"}
    if hint in names:
        return names[hint]
    if hint is Path:
        return "a path"
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        return "an array"
    if origin is dict or dataclasses.is_dataclass(hint):
        return "a table"
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(hint)))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint) if a is not type(None))
    return getattr(hint, "__name__", str(hint))
