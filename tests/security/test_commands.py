"""The `seqrec` commands that load saved artifacts, on tampered ones: no code runs, the command exits
with status 2 and names the file; `seqrec convert` turns a format-1 run into one that loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import rewrite_manifest
from tests.security.test_artifacts import MARKER_NAME, evil_bytes, evil_torch_file

runner = CliRunner()


@pytest.fixture(scope="module")
def app():
    from recsim_env.cli import build_app

    return build_app()


@pytest.fixture(scope="module")
def saved(app, tmp_path_factory):
    """A world log, an SB3 run and an encoder checkpoint, made through the commands themselves."""
    import torch

    from recsim_env import encoders

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("saved")
    result = runner.invoke(app, ["world", "log", "--policy", "uniform", "--steps", "1500", "--seed", "0", "--out", str(root / "logs.parquet")])  # fmt: skip
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        [
            "train", "--out", str(root / "run"), "--num-envs", "2", "--stop-timesteps", "128", "--eval-interval", "64",
            "--eval-episodes", "1", "--encoder-config", '{"d_model": 16, "n_layers": 1}',
            "--algo-config", '{"n_steps": 32, "batch_size": 32}', "--env-config", '{"max_steps": 10}', "--no-progress",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    from recsim_env.data import load

    logs = load(root / "logs.parquet")
    encoder = encoders.build("sasrec", {"n_items": logs.n_items, "max_len": 8, "d_model": 16, "n_layers": 1})
    encoders.save(root / "encoder", encoder, item_ids=logs.item_ids)
    return root


def _tamper(directory: Path, name: str, payload: bytes) -> None:
    (directory / name).write_bytes(payload)
    rewrite_manifest(directory)


COMMANDS = {
    "evaluate": lambda root: ["evaluate", str(root / "run"), "--episodes", "4"],
    "ope-report": lambda root: [
        "ope-report", "--logs", str(root / "logs.parquet"), "--policy", str(root / "run"), "--out", str(root / "report"),
    ],
    "train --resume": lambda root: ["train", "--resume", str(root / "run"), "--stop-timesteps", "192", "--no-progress"],
}  # fmt: skip
SLOTS = {
    "evaluate": [("policy", "weights.safetensors"), ("policy", "policy.json")],
    "ope-report": [("policy", "weights.safetensors"), ("policy", "policy.json")],
    "train --resume": [
        ("state", "weights.safetensors"), ("state", "optimizer.safetensors"), ("state", "optimizer.json"),
        ("state", "train_config.json"), ("state", "progress.json"),
    ],
}  # fmt: skip


@pytest.mark.parametrize("rehashed", [False, True], ids=["hash-mismatch", "rehashed"])
@pytest.mark.parametrize(
    ("command", "folder", "name"), [(c, f, n) for c, slots in SLOTS.items() for f, n in slots]
)
def test_commands_refuse_a_tampered_run_and_run_no_code(app, saved, command, folder, name, rehashed, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(saved, root)
    marker = tmp_path / MARKER_NAME
    payload = evil_torch_file(marker) if name.endswith(".safetensors") else evil_bytes(marker)
    (root / "run" / folder / name).write_bytes(payload)
    if rehashed:
        rewrite_manifest(root / "run" / folder)
    result = runner.invoke(app, COMMANDS[command](root))
    assert result.exit_code in (1, 2) and isinstance(result.exception, SystemExit), result.output
    assert name in result.output
    assert not marker.exists()


@pytest.mark.parametrize("name", ["weights.safetensors", "config.json", "item_ids.json", "manifest.json"])
def test_recommend_refuses_a_tampered_encoder_and_runs_no_code(app, saved, name, tmp_path):
    encoder = tmp_path / "encoder"
    shutil.copytree(saved / "encoder", encoder)
    marker = tmp_path / MARKER_NAME
    (encoder / name).write_bytes(evil_torch_file(marker) if name.endswith(".safetensors") else evil_bytes(marker))
    out = tmp_path / "recs.parquet"
    result = runner.invoke(app, ["recommend", str(encoder), "--data", str(saved / "logs.parquet"), "--out", str(out)])
    assert result.exit_code != 0 and name in result.output, result.output
    assert not marker.exists() and not out.exists()


def test_resume_without_state_says_there_is_nothing_to_resume(app, tmp_path):
    result = runner.invoke(app, ["train", "--resume", str(tmp_path), "--no-progress"])
    assert result.exit_code == 2 and "nothing to resume" in result.output


def test_convert_turns_a_format_1_sb3_run_into_one_that_evaluates(app, saved, tmp_path):
    """A run as format 1 wrote it (SB3's model.zip with a pickled `data` entry, a replay pickle): the
    conversion reads `policy.pth` with `weights_only=True`, never `data`; the result loads and acts
    as the weights say."""
    import io
    import zipfile

    import torch

    from agents import load_policy

    marker = tmp_path / MARKER_NAME
    old = tmp_path / "old"
    old.mkdir()
    new_policy = saved / "run" / "policy"
    weights = json.loads((new_policy / "policy.json").read_text())["config"]
    from recsim_env.checkpoint import tensors_from_bytes

    state = tensors_from_bytes((new_policy / "weights.safetensors").read_bytes(), framework="pt")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with zipfile.ZipFile(old / "model.zip", "w") as archive:
        archive.writestr("data", evil_bytes(marker))
        archive.writestr("policy.pth", buffer.getvalue())
    (old / "replay_buffer.pkl").write_bytes(evil_bytes(marker))
    (old / "policy.json").write_text(json.dumps({"kind": "sb3", "format_version": 1, "config": {"algo": "ppo", "n_items": weights["n_items"]}}))
    (old / "train_config.json").write_text(json.dumps(weights["train_config"]))
    (old / "logs").mkdir()
    (old / "logs" / "progress.csv").write_text("a\n1\n")

    result = runner.invoke(app, ["evaluate", str(old), "--episodes", "4"])
    assert result.exit_code == 2 and "seqrec convert" in result.output
    result = runner.invoke(app, ["convert", str(old)])
    assert result.exit_code == 0, result.output
    assert not marker.exists()
    assert sorted(p.name for p in old.iterdir()) == ["logs", "policy", "state"]
    converted, original = load_policy(old), load_policy(saved / "run")
    import gymnasium as gym

    obs, _ = gym.make("SeqRec-v0").reset(seed=0)
    assert converted.act(obs, deterministic=True) == original.act(obs, deterministic=True)
    result = runner.invoke(app, ["evaluate", str(old), "--episodes", "4"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["convert", str(old)])
    assert result.exit_code == 2 and "already in the current format" in result.output


@pytest.mark.parametrize(
    "command",
    [
        ["train-encoder", "--data", "{logs}", "--model", "sasrec", "--epochs", "1"],
        ["train-simulator", "--data", "{logs}", "--epochs", "1"],
        ["train", "--agent", "tscac", "--data", "{logs}"],
    ],
    ids=["train-encoder", "train-simulator", "train-agent"],
)
def test_training_commands_refuse_an_out_folder_of_other_files_before_training(app, saved, command, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    arguments = [a.format(logs=saved / "logs.parquet") for a in command] + ["--out", str(mine)]
    result = runner.invoke(app, arguments)
    assert result.exit_code != 0 and "is not a saved artifact; refusing to replace it" in result.output
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
