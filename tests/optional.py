"""Optional dependencies in tests: skip where an extra is not installed, fail where CI requires it.

CI sets `SEQREC_REQUIRE_EXTRAS` to the extras it installs (comma-separated, e.g. "rllib,browser,d3rlpy"):
there a missing extra is a failure, because a skipped check would pass for one that never ran.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

REQUIRE_EXTRAS_ENV = "SEQREC_REQUIRE_EXTRAS"


def required_extras() -> frozenset[str]:
    """The extras this run must have, from `SEQREC_REQUIRE_EXTRAS`."""
    return frozenset(name.strip() for name in os.environ.get(REQUIRE_EXTRAS_ENV, "").split(",") if name.strip())


def missing_extra(extra: str, reason: str) -> None:
    """Skip with `reason`, or fail with it where `extra` is required."""
    if extra in required_extras():
        pytest.fail(f"{reason} ({REQUIRE_EXTRAS_ENV} requires the '{extra}' extra)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def import_extra(module: str, *, extra: str, reason: str | None = None) -> ModuleType:
    """Import `module`, or skip (fail where required) naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        missing_extra(extra, reason or f"{module} is not importable ({error}); it comes with the '{extra}' extra")
        raise  # unreachable: skip and fail raise
