"""Every registered encoder as the policy backbone of `seqrec train --encoder NAME`: PPO trains, saves a
policy with that encoder, and the saved policy evaluates; the item content an encoder reads (H2Rec needs
it) comes from the environment's catalogue and travels in the saved policy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from agents.cli import evaluate_command, train_command
from recsim_env.encoders import ENCODERS
from tests.agents.test_cli import TINY

app = typer.Typer()
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)
SMALL = {"icsrec": {"n_intents": 8}}
"""Encoder settings a tiny run needs (ICSRec's 512 intents would outnumber the batch's states)."""


@pytest.mark.parametrize(
    "name", sorted(set(ENCODERS) - {"sasrec"})
)  # SASRec: the default, tested in test_cli
def test_ppo_trains_saves_and_evaluates_with_the_encoder(name, tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    options = list(TINY)
    at = options.index("--encoder-config") + 1
    options[at] = json.dumps({**json.loads(options[at]), **SMALL.get(name, {})})
    arguments = ["train", "--backend", "sb3", "--algo", "ppo", "--encoder", name, "--out", str(out), *options]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "trained 128 steps" in result.output
    saved = json.loads((out / "policy" / "policy.json").read_text())["config"]["train_config"]
    assert saved["encoder"] == name
    result = runner.invoke(
        app, ["evaluate", str(out), "--env-config", '{"max_steps": 10}', "--episodes", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["episodes"] == 2


def _tiny_config(**changes):
    from agents.training import TrainConfig

    fields = {
        "encoder": "h2rec",
        "encoder_config": {"d_model": 16, "n_layers": 1, "codebook_size": 8, "kmeans_iterations": 5},
        "num_envs": 2,
        "env_config": {"max_steps": 10},
        "algo_config": {"n_steps": 32, "batch_size": 32},
        **changes,
    }
    return TrainConfig(**fields)


def _extractor_encoder(model):
    from agents.sb3 import SequenceFeaturesExtractor

    return next(m for m in model.policy.modules() if isinstance(m, SequenceFeaturesExtractor)).encoder


def test_the_item_content_round_trips_through_a_saved_policy(tmp_path, observations):
    """H2Rec reads the world's public item attributes by default (`--item-content auto`); the saved
    policy holds them (and the codes) in its weights and acts exactly as the policy that was saved."""
    import torch

    from agents import load_policy
    from agents.training.sb3 import SB3Policy, _make_env, build_model
    from recsim_env.encoders.item_text import world_item_content
    from recsim_env.world import UserWorld

    config = _tiny_config()
    assert config.content_source == "catalogue"
    env = _make_env(config, config.num_envs, config.seed)
    model = build_model(config, env)
    env.close()
    encoder = _extractor_encoder(model)
    content = world_item_content(UserWorld())
    assert content.shape == (500, 11)  # standardised duration, then the 10 categories one-hot
    torch.testing.assert_close(encoder.item_text, torch.from_numpy(content))
    assert int(encoder.item_codes.min()) >= 0
    with torch.no_grad():  # content and codes that rebuilding from the world would not reproduce
        encoder.item_text.add_(1.0)
        encoder.item_codes.copy_(encoder.item_codes.roll(1, dims=0))
    policy = SB3Policy(model, config.algo, config)
    policy.save(tmp_path / "policy")
    loaded = load_policy(tmp_path / "policy")
    assert loaded.config.item_content == "catalogue"
    reloaded = _extractor_encoder(loaded.model)
    assert torch.equal(reloaded.item_text, encoder.item_text)
    assert torch.equal(reloaded.item_codes, encoder.item_codes)
    np.testing.assert_array_equal(
        loaded.action_distribution(observations), policy.action_distribution(observations)
    )


def test_an_encoder_that_needs_item_content_and_gets_none_is_refused(tmp_path):
    with pytest.raises(ValueError, match="needs item content embeddings: use --item-content catalogue"):
        _tiny_config(item_content="none")
    result = CliRunner().invoke(
        app, ["train", "--encoder", "h2rec", "--item-content", "none", "--out", str(tmp_path / "run")]
    )
    assert result.exit_code == 2 and "--item-content catalogue" in result.output
    assert not (tmp_path / "run").exists()
    import gymnasium as gym

    from agents.sb3 import SequenceFeaturesExtractor

    space = gym.make("SeqRec-v0").observation_space
    with pytest.raises(ValueError, match="built by name"):
        SequenceFeaturesExtractor(
            space, checkpoint=str(tmp_path), item_content=np.zeros((500, 3), np.float32)
        )
    with pytest.raises(ValueError, match="rllib modules read no item content"):
        _tiny_config(backend="rllib")
    with pytest.raises(ValueError, match="item_content"):
        _tiny_config(item_content="text")


def test_sasrec_reads_the_catalogue_content_when_asked():
    from agents.training.sb3 import _make_env, build_model

    assert _tiny_config(encoder="sasrec", encoder_config={"d_model": 16}).content_source == "none"
    config = _tiny_config(encoder="sasrec", encoder_config={"d_model": 16}, item_content="catalogue")
    env = _make_env(config, 1, 0)
    encoder = _extractor_encoder(build_model(config, env))
    env.close()
    assert encoder.config.item_text_dim == 11 and encoder.item_text.abs().sum() > 0


def test_in_a_learned_simulator_the_catalogue_is_the_item_features_it_reads(world_logs, tmp_path):
    """Fitted on world logs, the simulator's item features are the world's public attributes; a simulator
    that reads no item features publishes none."""
    from agents.training.config import environment_item_content
    from recsim_env.encoders.item_text import world_item_content
    from recsim_env.world import UserWorld
    from simulators import SimulatorConfig, fit, save

    tiny = {"d_model": 8, "history_len": 4, "epochs": 1, "interest_filter": False}
    path = save(fit(world_logs, SimulatorConfig(**tiny)).simulator, tmp_path / "sim")
    content = environment_item_content("SeqRec-v0", {"simulator": str(path)})
    np.testing.assert_allclose(content, world_item_content(UserWorld()), rtol=0, atol=1e-6)
    bare = save(fit(world_logs, SimulatorConfig(**tiny, item_features=False)).simulator, tmp_path / "bare")
    with pytest.raises(ValueError, match="publish no item attributes"):
        environment_item_content("SeqRec-v0", {"simulator": str(bare)})
