"""The library's error types: every refusal of bad input raises one of these.

Each message names what is at fault: the file, column and first bad (1-based) row of a table; the
argument of a call; the file of a checkpoint. All subclass `RecsimError`, so a caller can catch
everything the library refuses in one clause, and the standard types callers already guard with:

| error | also a | raised for |
| --- | --- | --- |
| `DataError` | `ValueError` | a logged-data file or table: missing column, bad value, empty, corrupt |
| `ArgumentError` | `ValueError`, `TypeError` | an argument of a call or command: wrong type, range, shape, size |
| `ActionError` | `ArgumentError` | an action handed to an environment: shape, dtype, range, repeats |
| `CheckpointError` | `DataError` | a saved artifact: missing, truncated, altered, foreign, unsafe path |
| `UnsafePathError` | `ArgumentError` | a name or path that would leave its root directory |
"""

from __future__ import annotations


class RecsimError(Exception):
    """Base of every error the library raises on bad input."""


class DataError(RecsimError, ValueError):
    """Bad logged data: a missing column, an unparseable value, an empty file, a corrupt archive."""


class ArgumentError(RecsimError, ValueError, TypeError):
    """A bad argument: its message starts with the argument's name."""


class ActionError(ArgumentError):
    """An invalid action for an environment (shape, dtype, range, repeated items in a slate)."""


class CheckpointError(DataError):
    """A saved artifact that cannot be trusted or read; the message names the file."""


class UnsafePathError(ArgumentError):
    """A name or relative path that would resolve outside its root (separators, `..`, absolute)."""
