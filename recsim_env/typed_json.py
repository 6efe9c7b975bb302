"""Values read from JSON files, type-checked against the dataclass (or type hints) they fill.

A bool is not an int, a string is not a number, non-finite numbers are refused, lists become tuples
where a tuple is meant, and unknown keys are errors: every refusal is a `CheckpointError` naming the
file and the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from recsim_env.errors import CheckpointError


def _check_typed(value: Any, hint: Any, where: str) -> Any:
    """`value` (parsed JSON) checked against a type hint; lists become tuples where a tuple is meant."""
    import types
    import typing

    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any or hint is object:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in args:
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return _check_typed(value, option, where)
            except CheckpointError as error:
                errors.append(str(error))
        raise CheckpointError(errors[0] if errors else f"{where}: must be null, got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise CheckpointError(f"{where}: must be one of {list(args)}, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise CheckpointError(f"{where}: must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise CheckpointError(f"{where}: must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise CheckpointError(f"{where}: must be a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise CheckpointError(f"{where}: must be a string, got {value!r}")
        return value
    if origin is tuple or hint is tuple:
        if not isinstance(value, list | tuple):
            raise CheckpointError(f"{where}: must be a list, got {value!r}")
        if args and args[-1] is Ellipsis:
            return tuple(_check_typed(item, args[0], f"{where}[{i}]") for i, item in enumerate(value))
        if args and len(args) != len(value):
            raise CheckpointError(f"{where}: must have {len(args)} entries, got {len(value)}")
        return tuple(
            _check_typed(item, args[i], f"{where}[{i}]") if args else item for i, item in enumerate(value)
        )
    if origin is list or hint is list:
        if not isinstance(value, list):
            raise CheckpointError(f"{where}: must be a list, got {value!r}")
        return (
            [_check_typed(item, args[0], f"{where}[{i}]") for i, item in enumerate(value)] if args else value
        )
    if (
        origin in (dict, Mapping)
        or hint in (dict, Mapping)
        or (isinstance(origin, type) and issubclass(origin, Mapping))
    ):
        if not isinstance(value, dict):
            raise CheckpointError(f"{where}: must be a JSON object, got {value!r}")
        return value
    return value


def dataclass_from_json(cls: type, fields: Any, *, where: str) -> Any:
    """`cls(**fields)` for a config dataclass read from a file, each field type-checked first.

    An unknown key, a value of the wrong JSON type (a bool where an int is meant, a string where a
    number is) or a value its `__post_init__` refuses raises `CheckpointError` naming `where` and the
    field; lists become tuples where the field is a tuple.
    """
    import dataclasses
    import typing

    if not isinstance(fields, dict):
        raise CheckpointError(f"{where}: must hold a JSON object, got {type(fields).__name__}")
    known = {field.name: field for field in dataclasses.fields(cls) if field.init}
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise CheckpointError(f"{where}: unknown field(s) {unknown} for {cls.__name__}")
    hints = typing.get_type_hints(cls)
    checked = {
        name: _check_typed(value, hints.get(name, Any), f"{where}: field {name!r}")
        for name, value in fields.items()
    }
    try:
        return cls(**checked)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{where}: {error}") from None


def check_fields(values: Mapping[str, Any], hints: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """`values` (a JSON object from a file) with each key in `hints` type-checked; unknown keys refused."""
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise CheckpointError(f"{where}: unknown setting(s) {unknown}")
    return {name: _check_typed(value, hints[name], f"{where}: {name!r}") for name, value in values.items()}
