"""Argument checks shared by every package: scalars of a call and fields of a config dataclass.

Each check returns the value as a plain Python `int` / `float` / `bool` and refuses a bad one with an
`ArgumentError` whose message starts with the argument's name:

    check_integer("max_len", "ten", 1)        # max_len must be an integer, got 'ten' (str)
    check_real("alpha", 1.5, 0.0, 1.0, low_open=True, high_open=True)  # alpha must lie in (0, 1), got 1.5

A config's `__post_init__` checks a group of its fields with one call, each named `Config.field`:

    check_config_fields(self, ("d_model", "n_layers"), check_integer, low=1)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from recsim_env.errors import ArgumentError


def describe(value: Any, limit: int = 200) -> str:
    """`repr(value)` on one line, shortened to `limit` characters; numpy scalars as plain Python numbers.

    A hostile value may have a huge, multi-line or failing repr.
    """
    if isinstance(value, np.generic):
        value = value.item()
    try:
        text = repr(value)
    except Exception:  # a repr that raises must not hide the real error
        text = f"<{type(value).__name__} object>"
    if "\n" in text:  # a multi-line array repr, on one line
        text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_integer(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """`value` as an `int` in [low, high]; bools, floats (even 2.0), strings and None are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ArgumentError(f"{name} must be an integer, got {describe(value)} ({type(value).__name__})")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            bound = f"at least {low:,}"
        elif low is None:
            bound = f"at most {high:,}"
        else:
            bound = f"between {low:,} and {high:,}"
        raise ArgumentError(f"{name} must be {bound}, got {value:,}")
    return value


def check_real(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    allow_inf: bool = False,
) -> float:
    """`value` as a `float` in [low, high] (`low_open` / `high_open` leave an end out); bools, strings and NaN
    are refused, and infinities unless `allow_inf`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ArgumentError(f"{name} must be a real number, got {describe(value)} ({type(value).__name__})")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ArgumentError(f"{name} must be {'a number, not NaN' if allow_inf else 'finite'}, got {value!r}")
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = f"{'(' if low_open else '['}{lo}, {hi}{')' if high_open else ']'}"
        raise ArgumentError(f"{name} must lie in {interval}, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """`value` as a `bool`; 0, 1, "yes" and None are refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentError(f"{name} must be True or False, got {describe(value)} ({type(value).__name__})")
    return bool(value)


DEVICES = ("auto", "cpu", "cuda")
"""Values of the torch-device fields of configs (`auto`: CUDA when present)."""


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """`value` if it is one of `choices`."""
    if value not in choices:
        raise ArgumentError(f"{name} must be one of {list(choices)}, got {describe(value)}")
    return value


def check_config_fields(
    config: Any,
    names: Iterable[str],
    check: Callable[..., Any],
    *,
    prefix: str | None = None,
    optional: bool = False,
    store: bool = False,
    **bounds: Any,
) -> None:
    """Check the fields `names` of the config dataclass `config` with `check` (one of the checks above).

    Args:
        config: the dataclass instance (frozen or not), from its `__post_init__`.
        names: the fields to check, in order; the first bad one raises.
        check: `check_integer`, `check_real`, `check_bool` or `check_choice`.
        prefix: put before each field's name in messages; defaults to the class's name and a dot
            (`SimulatorConfig.d_model must be at least 1, got 0`).
        optional: let None pass (a field whose None means "not set").
        store: replace each value with the checked one (a plain `int`, `float` or `bool`).
        bounds: the check's keyword arguments (`low`, `high`, `low_open`, `choices`, ...).

    Raises:
        ArgumentError: naming the first field that `check` refuses.
    """
    if prefix is None:
        prefix = f"{type(config).__name__}."
    for name in names:
        value = getattr(config, name)
        if optional and value is None:
            continue
        checked = check(prefix + name, value, **bounds)
        if store:
            object.__setattr__(config, name, checked)
