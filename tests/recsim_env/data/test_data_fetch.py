import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from recsim_env.data import DATASETS, DataError, data_dir, fetch, load


def build_ml100k_zip(tmp_path: Path) -> tuple[str, str]:
    """A zip laid out like GroupLens' ml-100k.zip; returns its file:// URL and MD5."""
    archive = tmp_path / "ml-100k.zip"
    genres = "|".join(["0"] * 19)
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t10\t5\t100\n2\t20\t3\t50\n1\t20\t4\t90\n")
        zf.writestr(
            "ml-100k/u.item", f"10|A (1995)|01-Jan-1995||http://a|{genres}\n20|B (1995)|||http://b|{genres}\n"
        )
        zf.writestr("ml-100k/u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n")
        zf.writestr("ml-100k/README", "tiny")
    return archive.as_uri(), hashlib.md5(archive.read_bytes()).hexdigest()


def test_registry_has_grouplens_archives():
    assert DATASETS["ml-100k"].md5 == "0e33842e24a9c977be4e0107933c0723"
    assert DATASETS["ml-1m"].md5 == "c4d9eecfca2ab87c1945afe126590906"
    assert DATASETS["ml-20m"].md5 == "cd245b17a1ae2cc31bb14903e1204af3"
    for name, spec in DATASETS.items():
        assert (
            spec.url == f"https://files.grouplens.org/datasets/movielens/{name}.zip" and spec.folder == name
        )


def test_fetch_file_url_then_load_by_name(tmp_path, monkeypatch):
    url, md5 = build_ml100k_zip(tmp_path)
    root = tmp_path / "data"
    monkeypatch.setenv("SEQREC_DATA", str(root))
    assert data_dir() == root
    with pytest.raises(DataError, match=r"run `seqrec data fetch ml-100k`"):
        load("ml-100k")
    path = fetch("ml-100k", url=url, checksum=md5, data_dir=root, progress=False)
    assert path == root / "ml-100k" and (path / "u.data").is_file()
    assert sorted(p.name for p in root.iterdir()) == ["ml-100k"]  # no temp leftovers
    data = load("ml-100k")
    assert (data.n_users, data.n_items, data.n_interactions) == (2, 2, 3) and data.name == "ml-100k"
    assert data.items["title"].tolist() == ["A (1995)", "B (1995)"]
    # already present: no download (a bad URL would fail otherwise); force re-downloads through the mirror
    assert fetch("ml-100k", url="file:///nonexistent.zip", data_dir=root, progress=False) == path
    monkeypatch.setenv("SEQREC_MIRROR", (tmp_path).as_uri())
    assert fetch("ml-100k", checksum=md5, progress=False, force=True) == path
    assert sorted(p.name for p in root.iterdir()) == ["ml-100k"]


def test_wrong_checksum_raises_and_leaves_nothing(tmp_path):
    url, md5 = build_ml100k_zip(tmp_path)
    root = tmp_path / "data"
    with pytest.raises(DataError, match=rf"expected md5 {'0' * 32}, got {md5}"):
        fetch("ml-100k", url=url, checksum="0" * 32, data_dir=root, progress=False)
    assert list(root.iterdir()) == []
    # registered checksum (GroupLens') does not match the tiny archive either
    with pytest.raises(DataError, match="expected md5 0e33842e24a9c977be4e0107933c0723"):
        fetch("ml-100k", url=url, data_dir=root, progress=False)
    assert list(root.iterdir()) == []


def test_fetch_errors(tmp_path):
    with pytest.raises(DataError, match="unknown data set 'ml-7k'"):
        fetch("ml-7k", data_dir=tmp_path)
    with pytest.raises(DataError, match="download failed"):
        fetch("ml-100k", url=(tmp_path / "missing.zip").as_uri(), data_dir=tmp_path / "d", progress=False)
    notzip = tmp_path / "notzip.zip"
    notzip.write_text("hello")
    md5 = hashlib.md5(b"hello").hexdigest()
    with pytest.raises(DataError, match="not a zip archive"):
        fetch("ml-100k", url=notzip.as_uri(), checksum=md5, data_dir=tmp_path / "e", progress=False)
    assert list((tmp_path / "e").iterdir()) == []


def test_default_data_dir_without_env(monkeypatch):
    monkeypatch.delenv("SEQREC_DATA", raising=False)
    assert "recsim-env" in str(data_dir())
    assert json.dumps(str(data_dir()))
