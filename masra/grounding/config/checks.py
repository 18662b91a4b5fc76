"""Shared pieces of the typed configs: JSON round trip and value-type checks against annotations.

:func:`check_types` holds every value against its field's annotated type: a bool is not an int, an
int is fine for a float, None only for optional fields, so a YAML ``true`` or ``"128"`` is a
ValueError naming the key and value.
"""

from __future__ import annotations

import functools
import numbers
import types
from collections.abc import Mapping
from dataclasses import asdict, fields
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

__all__ = ["JsonConfig", "check_field_types", "check_types", "non_negative", "positive", "type_problem"]

_C = TypeVar("_C", bound="JsonConfig")


class JsonConfig:
    """JSON round trip shared by the configs: unknown keys are an error, missing keys take defaults."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload, no-any-return]

    @classmethod
    def from_dict(cls: type[_C], data: dict[str, Any]) -> _C:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**data)


def _type_ok(value: Any, tp: Any) -> bool:
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return any(_type_ok(value, arg) for arg in get_args(tp))
    if tp is Any:
        return True
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:  # numpy integers too
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if origin is not None:  # dict[str, Any] -> dict
        return isinstance(value, origin)
    if isinstance(tp, type) and hasattr(tp, "__dataclass_fields__"):  # a nested config: object or mapping
        return isinstance(value, tp | dict)
    return isinstance(value, tp)


def _type_name(tp: Any) -> str:
    names = {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string"}
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return " or ".join("null" if a is type(None) else _type_name(a) for a in get_args(tp))
    if origin is dict or tp is dict:
        return "a mapping"
    return names.get(tp, getattr(tp, "__name__", str(tp)))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def type_problem(cls: type, key: str, value: Any, prefix: str = "") -> str | None:
    """Why ``value`` does not fit the annotated type of field ``key`` of dataclass ``cls``, or None.

    Unknown keys are not judged here (``from_dict`` reports them). ``prefix`` starts the key in the
    reason (``"model."``, ``"ModelConfig."``).
    """
    hints = _hints(cls)
    if key not in hints or _type_ok(value, hints[key]):
        return None
    hint = ""
    if isinstance(value, str) and _type_ok(1.5, hints[key]):
        try:
            float(value)
            hint = " (YAML reads a number such as 1e-4 without a '.' as a string: write 1.0e-4)"
        except ValueError:
            pass
    return f"{prefix}{key} must be {_type_name(hints[key])}, got {value!r} ({type(value).__name__}){hint}"


def check_types(cls: type, values: Mapping[str, Any], prefix: str = "") -> None:
    """Raise ValueError for the first value of ``values`` whose type does not fit ``cls``'s field."""
    for key, value in values.items():
        problem = type_problem(cls, key, value, prefix)
        if problem is not None:
            raise ValueError(problem)


def check_field_types(obj: Any) -> None:
    """:func:`check_types` of every field of the dataclass instance ``obj`` (keys ``Class.field``)."""
    cls = type(obj)
    check_types(cls, {f.name: getattr(obj, f.name) for f in fields(cls)}, f"{cls.__name__}.")


def positive(owner: str, **values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{owner}.{name} must be > 0, got {value!r}")


def non_negative(owner: str, **values: float) -> None:
    for name, value in values.items():
        if not value >= 0:
            raise ValueError(f"{owner}.{name} must be >= 0, got {value!r}")
