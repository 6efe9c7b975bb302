"""Writing a report's folder: every file to a temporary first, then all renamed into place."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol

from recsim_env.errors import ArgumentError


class RenderedReport(Protocol):
    """A report that renders its plots (PNG bytes by file name), its Markdown and its HTML page."""

    def plots(self) -> dict[str, bytes]: ...

    def to_markdown(self, image_dir: str | None = ".") -> str: ...

    def to_html(self, plots: dict[str, bytes] | None = None) -> str: ...


def save_report(report: RenderedReport, out_dir: str | Path) -> dict[str, Path]:
    """Write `report`'s report.md, report.html and PNG plots into `out_dir`; return the paths.

    Everything is rendered in memory first, then written by `write_files_atomically`.
    """
    out_dir = check_out_dir(out_dir)
    plots = report.plots()
    files = {
        **plots,
        "report.md": report.to_markdown(".").encode("utf-8"),
        "report.html": report.to_html(plots).encode("utf-8"),
    }
    return write_files_atomically(out_dir, files)


def check_out_dir(out_dir: object) -> Path:
    """`out_dir` as a `Path`; refused when it is not a path or names an existing non-directory."""
    if not isinstance(out_dir, str | os.PathLike):
        raise ArgumentError(f"out_dir: expected a path, got {type(out_dir).__name__}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ArgumentError(f"out_dir: {out_dir} exists and is not a directory")
    return out_dir


def write_files_atomically(out_dir: Path, files: dict[str, bytes]) -> dict[str, Path]:
    """Write `files` (name -> bytes) into `out_dir`: all to temporaries first, then all renamed into place.

    On failure the temporaries are removed, and `out_dir` too when this call created it and it is empty.
    """
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    temporaries: dict[str, Path] = {}
    try:
        for name, data in files.items():
            fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.", suffix=".tmp")
            temporaries[name] = Path(tmp)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        for name, tmp in temporaries.items():
            os.replace(tmp, out_dir / name)
    except BaseException:
        for tmp in temporaries.values():
            tmp.unlink(missing_ok=True)
        if created:
            try:
                out_dir.rmdir()
            except OSError:
                pass
        raise
    return {name: out_dir / name for name in files}
