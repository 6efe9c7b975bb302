"""Extension points: an encoder and an agent added through their registries alone train through the
`seqrec` commands; every registered agent trains with `seqrec train --agent NAME` and evaluates
with `seqrec evaluate RUN`."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from recsim_env.encoders.base import EncoderConfig, SequenceEncoder

runner = CliRunner()


# ---------------------------------------------------------------------------------------------- a toy encoder
@dataclass(frozen=True, kw_only=True)
class MeanPoolConfig(EncoderConfig):
    """A toy encoder's config: nothing beyond the shared fields."""


class MeanPool(SequenceEncoder):
    """A toy encoder: the state at position t is the mean of the embeddings up to t (causal)."""

    name = "toymean"
    config_class = MeanPoolConfig

    def encode(self, item_ids, *, timestamps, feedback, padding_mask):
        del timestamps
        x = self.embed_inputs(item_ids, feedback, padding_mask)  # [B, L, D], padding zeroed
        counts = padding_mask.cumsum(1).clamp(min=1).unsqueeze(-1).to(x.dtype)
        return x.cumsum(1) / counts


# ---------------------------------------------------------------------------------------------- a toy agent
@dataclass(frozen=True, kw_only=True)
class ToyAgentConfig:
    """A toy offline agent: item click rates learned by a few Adam steps, acted on as popularity."""

    steps: int = 5
    seed: int = 0
    device: str = "cpu"


def toy_fit(config: ToyAgentConfig, data, progress: bool):
    from agents.baselines import baseline_policy
    from recsim_env.policies import LoggedItemStats

    torch.manual_seed(config.seed)
    items = torch.as_tensor(data.frame["item_id"].to_numpy())
    clicks = torch.as_tensor(data.frame["click"].to_numpy(dtype=np.float32))
    logits = torch.zeros(data.n_items, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=0.5)
    for _ in range(config.steps):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[items], clicks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    rates = torch.sigmoid(logits).detach().double().numpy()
    stats = LoggedItemStats(rates * 100, np.full(data.n_items, 100.0), None, None, None)
    return baseline_policy("popularity", n_items=data.n_items, stats=stats), {"loss": float(loss)}


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def app():
    from recsim_env.cli import build_app

    return build_app()


@pytest.fixture(scope="module")
def logs_file(tmp_path_factory):
    from recsim_env.world.logging import log_world

    path = tmp_path_factory.mktemp("logs") / "logs.parquet"
    log_world("uniform", steps=2000, seed=0, progress=False).to_parquet(path)
    return path


@pytest.fixture
def registered(monkeypatch):
    """The toy encoder and agent in their registries (removed again after the test)."""
    from agents import registry
    from recsim_env.encoders import registry as encoders

    monkeypatch.setitem(encoders.ENCODERS, "toymean", MeanPool)
    monkeypatch.setattr(registry, "AGENTS", dict(registry.AGENTS))
    registry.register_agent(
        registry.AgentSpec("toy", f"{__name__}:ToyAgentConfig", f"{__name__}:toy_fit", needs_data=True)
    )


def _evaluate(app, run):
    result = runner.invoke(app, ["evaluate", str(run), "--episodes", "4", "--env-config", '{"max_steps": 10}', "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_a_registered_encoder_trains_through_train_encoder_and_as_a_policy_backbone(app, logs_file, registered, tmp_path):
    result = runner.invoke(
        app,
        ["train-encoder", "--data", str(logs_file), "--model", "toymean", "--out", str(tmp_path / "enc"),
         "--epochs", "1", "--max-len", "8", "--d-model", "16", "--device", "cpu"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    from recsim_env import encoders

    assert isinstance(encoders.load(tmp_path / "enc"), MeanPool)
    result = runner.invoke(
        app,
        ["train", "--out", str(tmp_path / "run"), "--encoder", "toymean", "--num-envs", "2", "--stop-timesteps", "64",
         "--eval-interval", "64", "--eval-episodes", "1", "--encoder-config", '{"d_model": 16}',
         "--algo-config", '{"n_steps": 32, "batch_size": 32}', "--env-config", '{"max_steps": 10}', "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _evaluate(app, tmp_path / "run")["episodes"] == 4


def test_a_registered_agent_trains_through_seqrec_train(app, logs_file, registered, tmp_path):
    result = runner.invoke(
        app,
        ["train", "--agent", "toy", "--data", str(logs_file), "--out", str(tmp_path / "toy"),
         "--algo-config", '{"steps": 3}', "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "trained toy" in result.output and "policy saved" in result.output
    assert _evaluate(app, tmp_path / "toy")["policy"] == "popularity"
    result = runner.invoke(app, ["train", "--agent", "toy", "--out", str(tmp_path / "x"), "--no-progress"])
    assert result.exit_code == 2 and "--data" in result.output


def test_tscac_trains_and_evaluates_through_the_commands(app, logs_file, tmp_path):
    config = {"d_model": 8, "n_layers": 1, "critic_steps": 2, "actor_steps": 2, "batch_size": 32, "history_len": 8}
    result = runner.invoke(
        app,
        ["train", "--agent", "tscac", "--data", str(logs_file), "--out", str(tmp_path / "tscac"),
         "--algo-config", json.dumps(config), "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _evaluate(app, tmp_path / "tscac")["episodes"] == 4


def test_sim2rec_trains_in_a_simulator_set_and_evaluates_through_the_commands(app, logs_file, tmp_path):
    from recsim_env.data import load
    from simulators import SimulatorConfig, fit, save

    tiny = SimulatorConfig(d_model=16, history_len=8, epochs=1, batch_size=128, dropout=0.0, ensemble_size=2)
    simulator = save(fit(load(logs_file), tiny).simulator, tmp_path / "sim")
    config = {
        "env": "seqrec", "simulator": str(simulator), "total_timesteps": 64, "num_envs": 4, "num_minibatches": 2,
        "window": 5, "hidden_dim": 16, "context_dim": 8, "rollout_steps": 16, "d_model": 16,
        "env_kwargs": {"history_len": 8, "max_steps": 10},
    }  # fmt: skip
    result = runner.invoke(
        app, ["train", "--agent", "sim2rec", "--out", str(tmp_path / "s2r"), "--algo-config", json.dumps(config), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["evaluate", str(tmp_path / "s2r"), "--episodes", "4", "--env-config", '{"history_len": 8, "max_steps": 10}', "--json"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["train", "--agent", "sim2rec", "--data", str(logs_file), "--out", str(tmp_path / "x"), "--no-progress"]
    )
    assert result.exit_code == 2 and "--data does not apply" in result.output
