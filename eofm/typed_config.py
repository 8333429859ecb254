"""Typed configuration: dataclasses built from YAML mappings, with errors that help.

Every recipe section (and every dataset's ``data`` section) is a dataclass. This module
turns a mapping into one, checking each key and value type before anything heavy is
imported: an unknown key names the key and the nearest valid one, a wrong value names
the key and the type it must have. Fields may carry one line of help
(``field(metadata={"help": ...})``, see :func:`option`), which ``eofm recipes --keys``
prints.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, field
from typing import Any, Literal, Union

from eofm.errors import RecipeError

#: A hook that picks the dataclass of a section from its raw mapping (e.g. ``data.name``).
Selector = Callable[[Mapping[str, Any], str], type]


def option(default: Any = MISSING, help: str = "", *, factory: Callable[[], Any] | None = None):
    """A dataclass field with one line of help (mutable defaults go through ``factory``)."""
    metadata = {"help": help}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def selected_by(selector: Selector, help: str = "") -> Any:
    """A section whose dataclass depends on its content (see :data:`Selector`)."""
    return field(default=None, metadata={"help": help, "selector": selector})


def section_class(cls: type, name: str, data: Mapping[str, Any], where: str) -> type:
    """The dataclass of ``cls.name`` for the raw mapping ``data``."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    selector = f.metadata.get("selector")
    if selector is not None:
        return selector(data, where)
    return typing.get_type_hints(cls)[name]


def _is_section(cls: type, name: str) -> bool:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return "selector" in f.metadata or dataclasses.is_dataclass(typing.get_type_hints(cls)[name])


def all_keys(
    cls: type,
    prefix: str = "",
    sections: Mapping[str, type] | None = None,
    *,
    mappings: bool = False,
) -> list[str]:
    """Every valid dotted key of a dataclass tree (``sections`` resolves selected ones);
    with ``mappings``, only the keys whose value is a free mapping (``dict[str, ...]``)."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        dotted = f"{prefix}{f.name}"
        sub = (sections or {}).get(dotted) or hints[f.name]
        if dataclasses.is_dataclass(sub):
            if not mappings:
                keys.append(dotted)
            keys.extend(all_keys(sub, dotted + ".", sections, mappings=mappings))
        elif not mappings or dict in {typing.get_origin(a) for a in (sub, *typing.get_args(sub))}:
            keys.append(dotted)
    return keys


def check_dotted_key(key: str, valid: list[str], free_mappings: list[str], where: str) -> None:
    """An override key must name a field, or an entry under a free mapping field."""
    if key in valid or any(key.startswith(m + ".") for m in free_mappings):
        return
    raise unknown_key_error(key, where, valid)


def unknown_key_error(key: str, where: str, valid: list[str]) -> RecipeError:
    """``Unknown recipe key 'a.b' in WHERE. Did you mean 'a.c'?``"""
    leaf = key.rsplit(".", 1)[-1]
    suggestions = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if not suggestions:
        section = key.rsplit(".", 1)[0] + "." if "." in key else ""
        siblings = [k for k in valid if k.startswith(section) and k.count(".") == key.count(".")]
        by_leaf = difflib.get_close_matches(
            leaf, [k.rsplit(".", 1)[-1] for k in siblings], n=1, cutoff=0.5
        )
        suggestions = [section + by_leaf[0]] if by_leaf else []
    hint = f" Did you mean '{suggestions[0]}'?" if suggestions else ""
    return RecipeError(f"Unknown recipe key '{key}' in {where}.{hint}")


def build_dataclass(
    cls: type,
    data: Any,
    *,
    prefix: str,
    where: Callable[[str], str],
    valid_keys: Callable[[], list[str]],
) -> Any:
    """Build dataclass ``cls`` from a mapping, checking keys and value types.

    ``where(key)`` says where a key came from (a file, or the command-line overrides);
    ``valid_keys()`` lists every key of the whole tree, for suggestions.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        name = prefix.rstrip(".") or "recipe"
        raise RecipeError(f"Recipe key '{name}' in {where(name)} must be a mapping, got {data!r}.")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            dotted = f"{prefix}{key}"
            raise unknown_key_error(dotted, where(dotted), valid_keys())
    kwargs = {}
    for f in dataclasses.fields(cls):
        dotted = f"{prefix}{f.name}"
        if _is_section(cls, f.name):
            value = data.get(f.name) or {}
            sub = section_class(
                cls, f.name, value if isinstance(value, Mapping) else {}, where(dotted)
            )
            kwargs[f.name] = build_dataclass(
                sub, value, prefix=dotted + ".", where=where, valid_keys=valid_keys
            )
        elif f.name in data:
            kwargs[f.name] = coerce(data[f.name], hints[f.name], dotted, where(dotted))
    return cls(**kwargs)


def type_name(hint: Any) -> str:
    """A readable name of a type hint: ``int | None``, ``'a' | 'b'``, ``list[str]``."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(hint))
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(type_name(a) for a in typing.get_args(hint))}]"
    if hint is type(None):
        return "None"
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def coerce(value: Any, hint: Any, key: str, where: str) -> Any:
    """Check ``value`` against a type hint (with the few coercions YAML needs)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)

    def fail() -> RecipeError:
        return RecipeError(
            f"Recipe key '{key}' in {where} must be {type_name(hint)}, got {value!r}."
        )

    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key, where)
            except RecipeError:
                continue
        raise fail()
    if origin is Literal:
        if isinstance(value, bool) and {"on", "off"} <= set(args):  # YAML 1.1 reads off as False
            value = "on" if value else "off"
        if value in args:
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
        hint_text = f" Did you mean {close[0]!r}?" if close else ""
        raise RecipeError(
            f"Recipe key '{key}' in {where} must be one of {list(args)}, got {value!r}.{hint_text}"
        )
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise fail()
        return [coerce(v, args[0], f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise fail()
        return {
            coerce(k, args[0], key, where): coerce(v, args[1], f"{key}.{k}", where)
            for k, v in value.items()
        }
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise fail()
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise fail()
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads "3e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise fail()
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, datetime.date):  # YAML reads 2020-01-04 as a date
            return value.isoformat()
        raise fail()
    raise fail()


def describe_keys(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """``(dotted key, type, default, help)`` for each field of ``cls`` (for ``--keys``)."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):  # a nested section: its own keys
            rows.extend(describe_keys(hints[f.name], f"{prefix}{f.name}."))
            continue
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        rows.append(
            (
                f"{prefix}{f.name}",
                type_name(hints[f.name]),
                repr(default),
                f.metadata.get("help", ""),
            )
        )
    return rows


class RecipeOrigin(str):
    """Where a recipe came from (its file, as a string), knowing which keys the command
    line's overrides set, so that an error about such a key names the command line."""

    overridden: frozenset[str]

    def __new__(cls, where: str, overridden: Iterable[str] = ()) -> RecipeOrigin:
        origin = super().__new__(cls, where)
        origin.overridden = frozenset(overridden)
        return origin

    def of(self, key: str) -> str:
        """``the command-line overrides`` when they set ``key`` (or a key around it)."""
        if any(
            key == k or key.startswith(k + ".") or k.startswith(key + ".") for k in self.overridden
        ):
            return "the command-line overrides"
        return str(self)


def where_of(where: str, key: str) -> str:
    """Where dotted ``key`` was given: the command line when it set it, else ``where``."""
    return where.of(key) if isinstance(where, RecipeOrigin) else where


def check_positive(config: Any, where: str, *names: str, allow_zero: bool = False) -> None:
    """Numbers that must be > 0 (or >= 0): one error naming the dotted key (``data.x``) and
    where it was given (the recipe file or the command line, see :class:`RecipeOrigin`)."""
    for name in names:
        value = getattr(config, name.rsplit(".", 1)[-1])
        if value is None:
            continue
        if value < 0 or (value == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise RecipeError(
                f"Recipe key '{name}' in {where_of(where, name)} must be {bound}, got {value!r}."
            )
