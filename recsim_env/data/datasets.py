"""Named data sets: where they live (`data_dir`) and how to fetch them (`fetch`).

Checksums are the MD5 sums GroupLens publishes beside each archive (`<name>.zip.md5` on
files.grouplens.org); the same values appear in other projects' download code, e.g. the keras-io MovieLens
example (`DATASETS = {"100k": {..., "checksum": "0e33842e..."}, ...}`) and PaddlePaddle's
`dataset.common.download(..., 'c4d9eecf...')` for ml-1m.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import platformdirs
from tqdm.auto import tqdm

from recsim_env.checks import check_bool
from recsim_env.data.checks import dataset_name_argument
from recsim_env.errors import ArgumentError, DataError, UnsafePathError

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
_MD5 = re.compile(r"[0-9a-fA-F]{32}")


def data_dir() -> Path:
    """Where named data sets live: `$SEQREC_DATA` if set, else the user cache dir of `recsim-env`."""
    env = os.environ.get("SEQREC_DATA")
    return Path(env) if env else Path(platformdirs.user_cache_dir("recsim-env"))


_default_data_dir = data_dir  # `fetch` takes a `data_dir` argument that shadows the function

DOWNLOAD_TIMEOUT_S = 60.0
"""Seconds a download may wait on the network for any one connect or read before it is abandoned."""
MAX_DOWNLOAD_BYTES = 2 << 30
"""Largest archive `fetch` downloads (2 GiB; ml-20m is 190 MiB); a larger one is aborted and removed."""
MAX_EXTRACTED_BYTES = 16 << 30
"""Largest total size an archive may declare for its members (ml-20m unpacks to 0.9 GiB)."""
MAX_ARCHIVE_MEMBERS = 100_000
"""Most members an archive may hold."""
_URL_SCHEMES = ("https", "http", "file")


def dataset_path(name: str, root: str | os.PathLike | None = None) -> Path:
    """`<root>/<name>` for a data-set `name` that is one plain directory name and resolves inside `root`.

    Raises:
        UnsafePathError: naming `name`, for separators, `..`, absolute or empty names, NUL, a leading dot, or a
            name whose directory resolves (e.g. through a symbolic link) outside `root`.
    """
    name = dataset_name_argument(name, "name")
    root = Path(root) if root is not None else _default_data_dir()
    target = root / name
    resolved_root = root.resolve()
    resolved = target.resolve()
    if resolved == resolved_root or not resolved.is_relative_to(resolved_root):
        raise UnsafePathError(
            f"name {name!r}: {target} resolves to {resolved}, outside the data directory {root}"
        )
    return target


def _check_url(url: object) -> str:
    if not isinstance(url, str) or not url:
        raise ArgumentError(f"url: expected a URL string, got {type(url).__name__}")
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in _URL_SCHEMES:
        raise ArgumentError(f"url {url!r}: only {', '.join(_URL_SCHEMES)} URLs can be fetched")
    return url


def _content_length(response) -> int | None:
    """The Content-Length the server declared, or None when it is missing or not a plain number."""
    value = response.headers.get("Content-Length") if getattr(response, "headers", None) is not None else None
    if value is None or not str(value).strip().isdigit():
        return None
    return int(str(value).strip())


def _download(url: str, dest: Path, *, progress: bool) -> str:
    """Stream `url` into `dest`, returning the MD5 hex digest.

    At most `MAX_DOWNLOAD_BYTES` are read (a larger declared Content-Length aborts before reading), each
    network wait is bounded by `DOWNLOAD_TIMEOUT_S`, and on any failure `dest` is removed.
    """
    md5 = hashlib.md5()
    limit = MAX_DOWNLOAD_BYTES
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(dest, "wb") as out:
            total = _content_length(response)
            if total is not None and total > limit:
                raise DataError(
                    f"{url}: download refused: the archive is {total} bytes, over the limit of {limit} bytes"
                )
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=f"download {Path(urllib.parse.urlsplit(url).path).name}",
                disable=not progress,
            ) as bar:
                while chunk := response.read(1 << 20):
                    received += len(chunk)
                    if received > limit:
                        raise DataError(f"{url}: download aborted: more than the limit of {limit} bytes")
                    out.write(chunk)
                    md5.update(chunk)
                    bar.update(len(chunk))
            if total is not None and received != total:
                raise DataError(f"{url}: download truncated: got {received} of {total} bytes")
    except DataError:
        dest.unlink(missing_ok=True)
        raise
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as err:
        dest.unlink(missing_ok=True)
        raise DataError(f"{url}: download failed ({err})") from err
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return md5.hexdigest()


def _extract(archive: Path, dest: Path, *, url: str) -> None:
    """Extract the zip `archive` into `dest`, refusing (DataError naming the archive and the member) any
    member whose name is absolute or holds `..`, a backslash, a drive or a NUL (zip-slip), and archives
    declaring more than `MAX_EXTRACTED_BYTES` or `MAX_ARCHIVE_MEMBERS`."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            if len(members) > MAX_ARCHIVE_MEMBERS:
                raise DataError(f"{url}: archive holds {len(members)} members, over {MAX_ARCHIVE_MEMBERS}")
            declared = sum(m.file_size for m in members)
            if declared > MAX_EXTRACTED_BYTES:
                raise DataError(
                    f"{url}: archive members add up to {declared} bytes, over the limit of {MAX_EXTRACTED_BYTES}"
                )
            root = dest.resolve()
            for member in members:
                name = member.filename
                parts = name.split("/")
                if (
                    not name
                    or name.startswith("/")
                    or "\\" in name
                    or "\x00" in name
                    or ":" in parts[0]
                    or ".." in parts
                    or not (dest / name).resolve().is_relative_to(root)
                ):
                    raise DataError(
                        f"{url}: archive member {name!r} would extract outside its folder "
                        "(absolute path, '..', backslash or drive); refusing the archive"
                    )
            dest.mkdir(parents=True, exist_ok=True)
            for member in members:
                zf.extract(member, dest)
    except zipfile.BadZipFile as err:
        raise DataError(f"{url}: not a zip archive ({err})") from err
    except (zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError, zlib.error) as err:
        raise DataError(f"{url}: cannot extract the archive ({type(err).__name__}: {err})") from err


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
        name: a key of DATASETS, or any name when `url` is given; one plain directory name (no separators,
            `..`, leading dot or NUL), else `UnsafePathError`.
        url: archive URL overriding the registry (https, http or file); else `$SEQREC_MIRROR/<name>.zip` when
            that variable is set; else GroupLens.
        checksum: expected MD5 (32 hex digits); defaults to the registered one. Required for unregistered names.
        data_dir: target root; defaults to `data_dir()`.
        progress: show a tqdm bar.
        force: download again even when the directory exists; only `<data_dir>/<name>` is ever replaced.

    The download goes to a work folder inside the data directory, is bounded in time (`DOWNLOAD_TIMEOUT_S`
    per network wait) and size (`MAX_DOWNLOAD_BYTES`), and its checksum is verified before extracting; on
    mismatch a DataError names expected and actual MD5. Extraction refuses members that would land outside
    the folder (zip-slip) and goes to the work folder, which is renamed into place; on any failure the work
    folder is removed, so nothing partial is left behind.
    """
    target = dataset_path(name, data_dir)
    root = target.parent
    check_bool("progress", progress)
    check_bool("force", force)
    if checksum is not None and (not isinstance(checksum, str) or not _MD5.fullmatch(checksum)):
        raise ArgumentError(f"checksum: expected an MD5 digest (32 hex digits), got {checksum!r}")
    spec = DATASETS.get(name)
    if spec is None and url is None:
        raise DataError(f"unknown data set {name!r}: known are {', '.join(DATASETS)} (or pass --url)")
    if target.is_dir() and not force:
        return target
    if (target.exists() or target.is_symlink()) and not force:
        raise DataError(f"{target}: exists and is not a data-set directory; pass --force to replace it")
    if url is None:
        mirror = os.environ.get("SEQREC_MIRROR")
        url = f"{mirror.rstrip('/')}/{name}.zip" if mirror else spec.url
    url = _check_url(url)
    expected = (checksum or (spec.md5 if spec else "")).lower()
    if not expected:
        raise DataError(f"fetch {name!r}: no checksum registered; pass checksum= (MD5 of the archive)")
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.fetch-"))
    try:
        archive = work / "archive.zip.part"
        actual = _download(url, archive, progress=progress)
        if actual != expected:
            raise DataError(f"{url}: checksum mismatch for {name!r}: expected md5 {expected}, got {actual}")
        extracted = work / "extracted"
        _extract(archive, extracted, url=url)
        archive.unlink()
        folder = extracted / spec.folder if spec else None
        if folder is None or not folder.is_dir() or folder.is_symlink():
            entries = list(extracted.iterdir())
            folder = entries[0] if len(entries) == 1 and entries[0].is_dir() else extracted
        if target.exists() or target.is_symlink():
            # force: swap the old copy out only once the new one is ready. `os.replace` moves the entry itself
            # (a symbolic link is moved, never followed), and the work folder it lands in is inside `root`.
            os.replace(target, work / "previous")
        os.replace(folder, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
