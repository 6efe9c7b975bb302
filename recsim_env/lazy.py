"""Lazy package exports (PEP 562): a package names what it exports, and each name is imported on first use.

Packages whose modules need torch use this so that importing the package (or its `cli` module, which
`seqrec --help` loads) stays light.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, importing `package.<module>` when `name` is first read.

    Args:
        package: the package's `__name__`.
        exports: exported name -> submodule that defines it.
        namespace: the package's `globals()`; a name, once imported, is cached there.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
