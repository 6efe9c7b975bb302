"""`seqrec attack poison` and `seqrec attack defend` end to end on tiny logs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from evaluation.attacks.cli import app, check_out
from recsim_env.data import LoggedInteractions
from recsim_env.errors import ArgumentError

REPORT_KEYS = (
    "target_hr10_clean",
    "target_hr10_poisoned",
    "target_hr10_defended",
    "ndcg10_clean",
    "ndcg10_defended",
)


@pytest.fixture
def clean_csv(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        start = int(rng.integers(20))
        rows += [(u, 100 + (start + t) % 20, 1000.0 * t, 4.0) for t in range(10)]
    folder = tmp_path / "clean"
    folder.mkdir()
    path = folder / "logs.csv"
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"]).to_csv(path, index=False)
    return path


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_poison_then_defend_write_their_files_and_leave_the_clean_data(clean_csv, tmp_path):
    before = clean_csv.read_bytes()
    out = tmp_path / "poisoned"
    result = invoke(
        "poison",
        "--data",
        clean_csv,
        "--kind",
        "sequential",
        "--fraction",
        "0.1",
        "--target",
        "119",
        "--target",
        "118",
        "--out",
        out,
        "--target-share",
        "0.3",
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "fake_users.json",
        "poisoned.parquet",
        "profile.png",
        "report.json",
        "report.md",
        "targets.png",
    ]
    logs = LoggedInteractions.read_parquet(out / "poisoned.parquet")
    fake = json.loads((out / "fake_users.json").read_text())
    assert logs.n_users == 44 and fake["fake_user_indices"] == [40, 41, 42, 43]
    report = json.loads((out / "report.json").read_text())
    assert [t["item"] for t in report["targets"]] == [119, 118]
    assert all(t["count_poisoned"] > t["count_clean"] for t in report["targets"])
    assert clean_csv.read_bytes() == before

    defended = tmp_path / "defended"
    result = invoke(
        "defend",
        "--data",
        clean_csv,
        "--poisoned",
        out,
        "--out",
        defended,
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--threads",
        "1",
        "--no-progress",
        "--steps",
        "30",
        "--folds",
        "2",
        "--start-epoch",
        "1",
        "--update-every",
        "1",
        "--updates",
        "2",
        "--flag-recall",
        "0.8",
        "--model-config",
        '{"max_len": 8, "d_model": 16}',
    )
    assert result.exit_code == 0, result.output
    report = json.loads((defended / "report.json").read_text())
    for key in REPORT_KEYS:
        assert 0.0 <= report[key] <= 1.0
    defence = report["defence"]
    assert defence["config"]["flag_recall"] == 0.8
    assert len(defence["per_update"]) == len(defence["trace"]) == 2
    for row, step in zip(defence["per_update"], defence["trace"], strict=True):
        assert row["flagged_fake"] + row["flagged_real"] == step["flagged"]
        assert len(row["fake_scores"]) == 4
    assert sum(defence["fake_flag_counts"]) <= 2 * 4
    assert {"exposure.png", "weights.png", "report.md"} <= {p.name for p in defended.iterdir()}
    assert clean_csv.read_bytes() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fraction", "1.5", "--target", "119"], "fraction must lie in (0, 1)"),
        (["--fraction", "0", "--target", "119"], "fraction must lie in (0, 1)"),
        (["--target", "999"], "item 999 is not in the item catalogue"),
        ([], "at least one target"),
        (["--kind", "evil", "--target", "119"], "kind must be one of"),
    ],
)
def test_bad_options_give_clear_errors_and_write_nothing(clean_csv, tmp_path, args, message):
    out = tmp_path / "out"
    result = invoke("poison", "--data", clean_csv, "--out", out, *args)
    assert result.exit_code == 2
    assert message in result.output
    assert not out.exists()


def test_out_on_the_data_is_refused(clean_csv):
    for out in (clean_csv.parent, clean_csv):
        result = invoke("poison", "--data", clean_csv, "--out", out, "--target", "119")
        assert result.exit_code == 2 and "--out" in result.output
    assert sorted(p.name for p in clean_csv.parent.iterdir()) == ["logs.csv"]
    folder = clean_csv.parent
    for out in (folder, folder / "sub", folder / "sub" / "deeper"):
        with pytest.raises(ArgumentError, match="--out"):
            check_out(out, folder)
    assert check_out(folder.parent / "elsewhere", folder) == (folder.parent / "elsewhere").resolve()


def test_defend_refuses_a_poisoned_folder_of_other_data(clean_csv, tmp_path):
    other = tmp_path / "other.csv"
    pd.DataFrame(
        {"user_id": [1, 1, 1, 2, 2, 2], "item_id": [1, 2, 3, 1, 2, 3], "timestamp": range(6)}
    ).to_csv(other, index=False)
    out = tmp_path / "poisoned"
    assert (
        invoke("poison", "--data", other, "--out", out, "--target", "3", "--fraction", "0.5").exit_code == 0
    )
    result = invoke(
        "defend", "--data", clean_csv, "--poisoned", out, "--out", tmp_path / "d", "--epochs", "1"
    )
    assert result.exit_code == 1 and "not those of the clean data" in result.output
