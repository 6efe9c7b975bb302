"""`fetch` / `seqrec data fetch` on hostile input: a data-set name never leaves the data directory (not even
with `--force`), an archive never extracts outside its folder, and a download that is too large, too slow,
truncated or interrupted leaves no partial file behind. Nothing here touches the network: archives are
`file://` URLs to temporary zips, or `urlopen` is replaced by a fake response."""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import recsim_env.data.datasets as datasets
from recsim_env.data import fetch
from recsim_env.data.cli import app as data_app
from recsim_env.errors import ArgumentError, DataError, UnsafePathError

runner = CliRunner()

TRAVERSAL_NAMES = {
    "parent": "../x",
    "dot-parent": "./../folder",
    "nested": "a/b",
    "absolute": "/abs",
    "dotdot": "..",
    "backslash": "a\\b",
    "hidden": ".hidden",
    "empty": "",
    "nul": "ml\x00100k",
    "deep-parent": "../../etc",
    "windows-drive": "C:evil",
    "trailing-parent": "ml-100k/..",
}


def make_zip(path: Path, members: dict[str, str]) -> tuple[str, str]:
    """A zip holding `members` (name -> text); returns its file:// URL and MD5."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(zipfile.ZipInfo(name), text)  # ZipInfo keeps the name exactly as given
    return path.as_uri(), hashlib.md5(path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes (what must be unchanged after a refused fetch)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def layout(tmp_path):
    """A data dir and, beside it, a sentinel folder a traversal name would reach."""
    root = tmp_path / "data"
    root.mkdir()
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "keep.txt").write_text("precious")
    (sentinel / "inner").mkdir()
    (sentinel / "inner" / "deep.txt").write_text("also precious")
    url, md5 = make_zip(tmp_path / "good.zip", {"ml-100k/u.data": "1\t10\t5\t100\n"})
    return root, sentinel, url, md5


def cli() -> typer.Typer:
    root = typer.Typer()
    root.add_typer(data_app, name="data")
    return root


# ---------------------------------------------------------------------------------------------- names
@pytest.mark.parametrize("name", TRAVERSAL_NAMES.values(), ids=TRAVERSAL_NAMES.keys())
def test_traversal_names_are_refused_naming_the_argument(name, layout):
    root, sentinel, url, md5 = layout
    before = snapshot(sentinel)
    with pytest.raises(UnsafePathError, match=r"^name\b"):
        fetch(name, url=url, checksum=md5, data_dir=root, progress=False, force=True)
    assert snapshot(sentinel) == before
    assert list(root.iterdir()) == []  # not even a work folder


@pytest.mark.parametrize("name", ["../sentinel", "./../sentinel", "ml-100k/../../sentinel", "ABSOLUTE"])
def test_force_with_a_traversal_name_leaves_the_folder_outside_intact(name, layout):
    root, sentinel, url, md5 = layout
    name = str(sentinel) if name == "ABSOLUTE" else name
    before = snapshot(sentinel)
    with pytest.raises(UnsafePathError, match="name"):
        fetch(name, url=url, checksum=md5, data_dir=root, progress=False, force=True)
    assert sentinel.is_dir() and snapshot(sentinel) == before
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("name", ["../sentinel", "./../sentinel", "ml-100k/../../sentinel", "ABSOLUTE"])
def test_cli_force_with_a_traversal_name_exits_2_and_leaves_the_folder_outside_intact(name, layout):
    root, sentinel, url, md5 = layout
    name = str(sentinel) if name == "ABSOLUTE" else name
    before = snapshot(sentinel)
    args = ["data", "fetch", name, "--url", url, "--checksum", md5, "--data-dir", str(root), "--force"]
    result = runner.invoke(cli(), args)
    assert result.exit_code == 2, result.output
    assert "name" in result.output and "Traceback" not in result.output
    assert sentinel.is_dir() and snapshot(sentinel) == before
    assert list(root.iterdir()) == []


def test_force_through_a_symbolic_link_that_leaves_the_data_dir_is_refused(layout):
    root, sentinel, url, md5 = layout
    (root / "ml-100k").symlink_to(sentinel, target_is_directory=True)
    before = snapshot(sentinel)
    with pytest.raises(UnsafePathError, match=r"name 'ml-100k'.*outside the data directory"):
        fetch("ml-100k", url=url, checksum=md5, data_dir=root, progress=False, force=True)
    with pytest.raises(UnsafePathError, match="outside the data directory"):
        fetch("ml-100k", data_dir=root, progress=False)  # not even returned as if it were a data set
    assert snapshot(sentinel) == before and (root / "ml-100k").is_symlink()


def test_force_replaces_only_its_own_folder(layout):
    root, sentinel, url, md5 = layout
    neighbour = root / "ml-1m"
    neighbour.mkdir()
    (neighbour / "ratings.dat").write_text("1::1::5::1\n")
    (root / "ml-100k").mkdir()
    (root / "ml-100k" / "stale.txt").write_text("old")
    path = fetch("ml-100k", url=url, checksum=md5, data_dir=root, progress=False, force=True)
    assert path == root / "ml-100k" and snapshot(path) == {"u.data": b"1\t10\t5\t100\n"}
    assert snapshot(neighbour) == {"ratings.dat": b"1::1::5::1\n"}
    assert sorted(p.name for p in root.iterdir()) == ["ml-100k", "ml-1m"]


def test_cli_refuses_a_traversal_name_without_force(layout):
    root, sentinel, url, md5 = layout
    result = runner.invoke(
        cli(), ["data", "fetch", "../x", "--url", url, "--checksum", md5, "--data-dir", str(root)]
    )
    assert result.exit_code == 2 and "name '../x'" in result.output and "Traceback" not in result.output


# ---------------------------------------------------------------------------------------------- zip-slip
ZIP_SLIP_MEMBERS = {
    "parent": "../evil.txt",
    "nested-parent": "ml-100k/../../evil.txt",
    "absolute": "/tmp/evil.txt",
    "backslash": "ml-100k\\..\\..\\evil.txt",
    "drive": "C:/evil.txt",
}


@pytest.mark.parametrize("member", ZIP_SLIP_MEMBERS.values(), ids=ZIP_SLIP_MEMBERS.keys())
def test_zip_slip_members_are_refused_naming_archive_and_member(member, tmp_path):
    root = tmp_path / "data"
    archive = tmp_path / "slip.zip"
    url, md5 = make_zip(archive, {"ml-100k/u.data": "1\t10\t5\t100\n", member: "pwned"})
    with pytest.raises(DataError, match=re.escape(f"slip.zip: archive member {member!r}")):
        fetch("ml-100k", url=url, checksum=md5, data_dir=root, progress=False)
    assert list(root.iterdir()) == []
    assert not any(p.name == "evil.txt" for p in tmp_path.rglob("*"))


def test_archive_declaring_too_many_bytes_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "MAX_EXTRACTED_BYTES", 10)
    url, md5 = make_zip(tmp_path / "big.zip", {"ml-100k/u.data": "x" * 100})
    with pytest.raises(DataError, match=r"big\.zip: archive members add up to 100 bytes"):
        fetch("ml-100k", url=url, checksum=md5, data_dir=tmp_path / "data", progress=False)
    assert list((tmp_path / "data").iterdir()) == []


# ---------------------------------------------------------------------------------------------- downloads
class FakeResponse(io.BytesIO):
    """What `urlopen` returns: a readable body and headers (optionally a Content-Length)."""

    def __init__(self, body: bytes, *, length: int | None = None, fail_after: int | None = None, error=None):
        super().__init__(body)
        self.headers = {} if length is None else {"Content-Length": str(length)}
        self.fail_after, self.error = fail_after, error

    def read(self, size=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise self.error
        return super().read(size)


def fake_urlopen(response: FakeResponse, calls: list):
    def urlopen(url, timeout=None):
        calls.append({"url": url, "timeout": timeout})
        return response

    return urlopen


def fetch_served(response: FakeResponse, root: Path, monkeypatch, calls: list) -> None:
    """`fetch("ml-100k")` over https with `response` as what the server sends (no network)."""
    monkeypatch.setattr(datasets.urllib.request, "urlopen", fake_urlopen(response, calls))
    fetch(
        "ml-100k",
        url="https://example.invalid/ml-100k.zip",
        checksum="0" * 32,
        data_dir=root,
        progress=False,
    )


@pytest.fixture
def small_limit(monkeypatch):
    monkeypatch.setattr(datasets, "MAX_DOWNLOAD_BYTES", 1 << 20)  # chunks are read 1 MiB at a time


def test_declared_oversize_download_is_refused_and_nothing_is_left(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "MAX_DOWNLOAD_BYTES", 100)
    url, md5 = make_zip(tmp_path / "a.zip", {"ml-100k/u.data": "y" * 1000})  # file:// sends Content-Length
    root = tmp_path / "data"
    with pytest.raises(DataError, match=r"a\.zip: download refused: .* over the limit of 100 bytes"):
        fetch("ml-100k", url=url, checksum=md5, data_dir=root, progress=False)
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("length", [None, 10], ids=["no-content-length", "lying-content-length"])
def test_streamed_oversize_download_is_aborted_and_its_partial_file_removed(
    length, tmp_path, monkeypatch, small_limit
):
    calls = []
    response = FakeResponse(b"z" * (3 << 20), length=length)
    root = tmp_path / "data"
    with pytest.raises(DataError, match=r"download aborted: more than the limit"):
        fetch_served(response, root, monkeypatch, calls)
    assert list(root.iterdir()) == []
    assert calls and calls[0]["timeout"] == datasets.DOWNLOAD_TIMEOUT_S


def test_timed_out_download_leaves_no_partial_file(tmp_path, monkeypatch):
    calls = []
    response = FakeResponse(b"z" * (3 << 20), fail_after=1 << 20, error=TimeoutError("timed out"))
    root = tmp_path / "data"
    with pytest.raises(DataError, match=r"example\.invalid/ml-100k\.zip: download failed \(timed out\)"):
        fetch_served(response, root, monkeypatch, calls)
    assert list(root.iterdir()) == []
    assert calls[0]["timeout"] == datasets.DOWNLOAD_TIMEOUT_S > 0


def test_truncated_download_is_refused_and_removed(tmp_path, monkeypatch):
    response, calls = FakeResponse(b"z" * 100, length=1000), []
    root = tmp_path / "data"
    with pytest.raises(DataError, match=r"download truncated: got 100 of 1000 bytes"):
        fetch_served(response, root, monkeypatch, calls)
    assert list(root.iterdir()) == []


def test_interrupted_download_leaves_no_partial_file(tmp_path, monkeypatch):
    response, calls = FakeResponse(b"z" * (3 << 20), fail_after=1 << 20, error=KeyboardInterrupt()), []
    root = tmp_path / "data"
    with pytest.raises(KeyboardInterrupt):
        fetch_served(response, root, monkeypatch, calls)
    assert list(root.iterdir()) == []


def test_failed_download_leaves_no_partial_file(tmp_path):
    root = tmp_path / "data"
    with pytest.raises(DataError, match=r"missing\.zip: download failed"):
        fetch(
            "ml-100k",
            url=(tmp_path / "missing.zip").as_uri(),
            checksum="0" * 32,
            data_dir=root,
            progress=False,
        )
    assert list(root.iterdir()) == []


def test_download_helper_removes_its_partial_file(tmp_path, monkeypatch, small_limit):
    response = FakeResponse(b"z" * (3 << 20))
    monkeypatch.setattr(datasets.urllib.request, "urlopen", fake_urlopen(response, []))
    dest = tmp_path / "archive.part"
    with pytest.raises(DataError, match="aborted"):
        datasets._download("https://example.invalid/x.zip", dest, progress=False)
    assert not dest.exists()


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"url": "ftp://example.invalid/ml-100k.zip"}, "url"),
        ({"url": "data:,hello"}, "url"),
        ({"url": "/no/scheme.zip"}, "url"),
        ({"checksum": "not-an-md5"}, "checksum"),
        ({"checksum": "0" * 31}, "checksum"),
        ({"force": "yes"}, "force"),
    ],
)
def test_bad_fetch_arguments_are_refused_naming_them(kwargs, argument, tmp_path):
    args = {"url": (tmp_path / "x.zip").as_uri(), "checksum": "0" * 32, **kwargs}
    with pytest.raises(ArgumentError, match=rf"^{argument}\b"):
        fetch("ml-100k", data_dir=tmp_path / "data", progress=False, **args)
    assert not (tmp_path / "data").exists() or list((tmp_path / "data").iterdir()) == []


def test_mirror_name_is_checked_before_it_is_joined_to_the_url(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQREC_MIRROR", tmp_path.as_uri())
    with pytest.raises(UnsafePathError, match="name"):
        fetch("../ml-100k", checksum="0" * 32, data_dir=tmp_path / "data", progress=False)
    assert os.listdir(tmp_path) == []


def test_the_installed_seqrec_command_refuses_a_traversal_name_with_force(layout):
    """The real `seqrec` entry point (a subprocess, as a user would run it), not only the Typer sub-app."""
    root, sentinel, url, md5 = layout
    before = snapshot(sentinel)
    args = [
        "data",
        "fetch",
        "../sentinel",
        "--url",
        url,
        "--checksum",
        md5,
        "--data-dir",
        str(root),
        "--force",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "recsim_env.cli", *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr
    assert "name '../sentinel'" in result.stderr and "Traceback" not in result.stderr
    assert snapshot(sentinel) == before and list(root.iterdir()) == []
