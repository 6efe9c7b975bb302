"""`seqrec convert`: directories as format 1 wrote them load again, acting as before, after one
conversion (the encoder, the baselines and the torch policies; simulators and SB3 runs have their
own tests in tests/simulators/test_checkpoint.py and tests/security/test_commands.py)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.convert import convert
from recsim_env.checkpoint import tensors_from_bytes
from recsim_env.errors import CheckpointError
from tests.security.test_artifacts import artifacts, world_logs  # noqa: F401  (fixtures)


def _torch_bytes(state) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _as_format_1(new: Path, old: Path, kind: str) -> None:
    """Rewrite a saved policy or encoder the way format 1 stored it."""
    old.mkdir()
    manifest = json.loads((new / "manifest.json").read_text())
    for name in manifest["files"]:
        data = (new / name).read_bytes()
        if name == "policy.json":
            policy = json.loads(data)
            (old / name).write_text(json.dumps({**policy, "format_version": 1}))
        elif name == "weights.safetensors":
            (old / "weights.pt").write_bytes(_torch_bytes(tensors_from_bytes(data, framework="pt")))
        elif name == "item_stats.safetensors":
            np.savez(old / "item_stats.npz", **tensors_from_bytes(data))
        else:
            (old / name).write_bytes(data)
    if kind == "encoder":
        meta = manifest["metadata"]
        (old / "checkpoint.json").write_text(json.dumps({**meta, "format_version": 1}))


@pytest.mark.parametrize("kind", ["encoder", "greedy", "popularity", "uniform", "dt4ier", "tscac", "sim2rec"])
def test_a_format_1_directory_converts_and_acts_as_before(artifacts, kind, tmp_path):  # noqa: F811
    source, load = artifacts[kind]
    old = tmp_path / "old"
    _as_format_1(source, old, kind)
    with pytest.raises(CheckpointError, match="seqrec convert"):
        load(old)
    where, _ = convert(old, tmp_path / "new")
    assert where == tmp_path / "new" and (old / "weights.pt").exists() == (source / "weights.safetensors").exists()
    converted, original = load(where), load(source)
    if kind == "encoder":
        ids = torch.tensor([[converted.n_items, 0, 1, 2, 3, 4, 5, 6]])
        torch.testing.assert_close(converted.user_state(ids), original.user_state(ids))
        return
    if kind == "sim2rec":
        from agents.sim2rec import make_env

        obs, _ = make_env(original.config, 14.0).reset(seed=2)
    else:
        import gymnasium as gym

        obs, _ = gym.make("SeqRec-v0", history_len=8).reset(seed=0)
    np.testing.assert_allclose(converted.action_distribution(obs), original.action_distribution(obs))


def test_convert_refuses_what_is_not_a_format_1_directory(artifacts, tmp_path):  # noqa: F811
    with pytest.raises(CheckpointError, match="already in the current format"):
        convert(artifacts["greedy"][0])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a saved encoder, simulator, policy or run of format 1"):
        convert(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="no such directory"):
        convert(tmp_path / "nowhere")
    old = tmp_path / "plugin"
    old.mkdir()
    (old / "policy.json").write_text(json.dumps({"kind": "my_plugin:Policy", "format_version": 1, "config": {}}))
    with pytest.raises(CheckpointError, match="not a registered policy kind"):
        convert(old)
    shutil.rmtree(old)
