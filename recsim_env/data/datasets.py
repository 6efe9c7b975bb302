"""Named data sets: where they live (`data_dir`) and how to fetch them (`fetch`).

Checksums are the MD5 sums GroupLens publishes beside each archive (`<name>.zip.md5` on
files.grouplens.org); the same values appear in other projects' download code, e.g. the keras-io MovieLens
example (`DATASETS = {"100k": {..., "checksum": "0e33842e..."}, ...}`) and PaddlePaddle's
`dataset.common.download(..., 'c4d9eecf...')` for ml-1m.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import platformdirs
from tqdm.auto import tqdm

from recsim_env.errors import DataError

GROUPLENS_BASE_URL = "https://files.grouplens.org/datasets/movielens"


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """A downloadable data set."""

    name: str
    """Registered name (also the directory name under `data_dir()`)."""
    url: str
    """Archive URL."""
    md5: str
    """Expected MD5 of the archive, as the publisher lists it."""
    folder: str
    """Top-level folder inside the zip."""


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="ml-100k",
            url=f"{GROUPLENS_BASE_URL}/ml-100k.zip",
            md5="0e33842e24a9c977be4e0107933c0723",
            folder="ml-100k",
        ),
        DatasetSpec(
            name="ml-1m",
            url=f"{GROUPLENS_BASE_URL}/ml-1m.zip",
            md5="c4d9eecfca2ab87c1945afe126590906",
            folder="ml-1m",
        ),
        DatasetSpec(
            name="ml-20m",
            url=f"{GROUPLENS_BASE_URL}/ml-20m.zip",
            md5="cd245b17a1ae2cc31bb14903e1204af3",
            folder="ml-20m",
        ),
    )
}


def data_dir() -> Path:
    """Where named data sets live: `$SEQREC_DATA` if set, else the user cache dir of `recsim-env`."""
    env = os.environ.get("SEQREC_DATA")
    return Path(env) if env else Path(platformdirs.user_cache_dir("recsim-env"))


_default_data_dir = data_dir  # `fetch` takes a `data_dir` argument that shadows the function


def _download(url: str, dest: Path, *, progress: bool) -> str:
    """Stream `url` into `dest`, returning the MD5 hex digest."""
    md5 = hashlib.md5()
    try:
        with urllib.request.urlopen(url) as response, open(dest, "wb") as out:
            total = response.headers.get("Content-Length")
            with tqdm(
                total=int(total) if total else None,
                unit="B",
                unit_scale=True,
                desc=f"download {Path(url).name}",
                disable=not progress,
            ) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    md5.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise DataError(f"{url}: download failed ({err})") from err
    return md5.hexdigest()


def fetch(
    name: str,
    *,
    url: str | None = None,
    checksum: str | None = None,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
    force: bool = False,
) -> Path:
    """Download, verify and extract a data set; return its directory (`<data_dir>/<name>`).

    Args:
        name: a key of DATASETS, or any name when `url` is given.
        url: archive URL overriding the registry (file:// works); else `$SEQREC_MIRROR/<name>.zip` when that
            variable is set; else GroupLens.
        checksum: expected MD5; defaults to the registered one. Required for unregistered names.
        data_dir: target root; defaults to `data_dir()`.
        progress: show a tqdm bar.
        force: download again even when the directory exists.

    The checksum is verified before extracting; on mismatch a DataError names expected and actual MD5 and
    nothing is left behind. Extraction goes to a temporary directory that is renamed into place.
    """
    spec = DATASETS.get(name)
    if spec is None and url is None:
        raise DataError(f"unknown data set {name!r}: known are {', '.join(DATASETS)} (or pass --url)")
    root = Path(data_dir) if data_dir is not None else _default_data_dir()
    target = root / name
    if target.is_dir() and not force:
        return target
    if url is None:
        mirror = os.environ.get("SEQREC_MIRROR")
        url = f"{mirror.rstrip('/')}/{name}.zip" if mirror else spec.url
    expected = (checksum or (spec.md5 if spec else "")).lower()
    if not expected:
        raise DataError(f"fetch {name!r}: no checksum registered; pass checksum= (MD5 of the archive)")
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.fetch-"))
    try:
        archive = work / "archive.zip"
        actual = _download(url, archive, progress=progress)
        if actual != expected:
            raise DataError(f"{url}: checksum mismatch for {name!r}: expected md5 {expected}, got {actual}")
        extracted = work / "extracted"
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(extracted)
        except zipfile.BadZipFile as err:
            raise DataError(f"{url}: not a zip archive ({err})") from err
        folder = extracted / spec.folder if spec else None
        if folder is None or not folder.is_dir():
            entries = list(extracted.iterdir())
            folder = entries[0] if len(entries) == 1 and entries[0].is_dir() else extracted
        if target.exists():  # force: swap the old copy out only once the new one is ready
            old = work / "previous"
            os.replace(target, old)
        os.replace(folder, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
