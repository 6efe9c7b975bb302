import hashlib
import json
import zipfile
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from recsim_env.data.cli import app as data_app

ML100K = Path(__file__).resolve().parents[3] / "../shared/data/ml-100k"
runner = CliRunner()


def root_app() -> typer.Typer:
    root = typer.Typer()
    root.add_typer(data_app, name="data")
    return root


@pytest.mark.skipif(
    not (ML100K / "ml-100k.inter").is_file(), reason=f"shared MovieLens 100K not found at {ML100K}"
)
def test_info_on_ml100k():
    result = runner.invoke(root_app(), ["data", "info", str(ML100K)])
    assert result.exit_code == 0, result.output
    for number in ("943", "1682", "100000", "rating"):
        assert number in result.output
    as_json = runner.invoke(root_app(), ["data", "info", str(ML100K), "--json"])
    stats = json.loads(as_json.output)
    assert (stats["n_users"], stats["n_items"], stats["n_interactions"]) == (943, 1682, 100000)
    assert stats["feedback_columns"] == ["rating"] and stats["sequence_length"]["min"] == 20


def test_info_bad_path_exits_1_naming_the_file(tmp_path):
    missing = tmp_path / "no_such_log.csv"
    result = runner.invoke(root_app(), ["data", "info", str(missing)])
    assert result.exit_code == 1
    assert "no_such_log.csv" in result.output and "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


def test_fetch_command(tmp_path):
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t10\t5\t100\n")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    args = ["data", "fetch", "ml-100k", "--url", archive.as_uri(), "--data-dir", str(tmp_path / "d")]
    bad = runner.invoke(root_app(), [*args, "--checksum", "1" * 32])
    assert bad.exit_code == 1 and "checksum mismatch" in bad.output
    good = runner.invoke(root_app(), [*args, "--checksum", md5])
    assert good.exit_code == 0, good.output
    assert Path(good.stdout.strip().splitlines()[-1]) == tmp_path / "d" / "ml-100k"
