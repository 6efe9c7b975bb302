"""Errors raised on bad input.

`DataError` subclasses `ValueError`, so code that guards a call with `except ValueError` also catches
bad data; its message always names the file, column, row or argument at fault.
"""

from __future__ import annotations


class DataError(ValueError):
    """Bad logged data: a missing column, an unparseable value, an empty file, a corrupt archive."""
