"""Every registered encoder as a learned simulator's backbone: the simulator fits, and its environment passes
`check_env` and steps; the item content an encoder reads (H2Rec needs it: the catalogue's item features by
default, or embedded item text columns) travels with the saved simulator."""

from __future__ import annotations

import zlib

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import recsim_env  # noqa: F401  (registers the environments)
from recsim_env.encoders import ENCODERS
from tests.simulators.conftest import TINY

H2REC = {**TINY, "epochs": 1, "encoder": "h2rec"}
"""A tiny H2Rec simulator."""


@pytest.mark.parametrize("name", sorted(set(ENCODERS) - {"sasrec"}))  # SASRec: the default, tested throughout
def test_the_simulator_fits_on_the_encoder_and_its_env_steps(name, world_logs, tmp_path):
    from simulators import SimulatorConfig, fit, save

    result = fit(world_logs, SimulatorConfig(**{**TINY, "epochs": 1}, encoder=name))
    assert type(result.simulator.members[0].encoder) is ENCODERS[name]
    path = save(result.simulator, tmp_path / "sim")
    env = gym.make("SeqRec-v0", simulator=str(path), max_steps=5)
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and float(reward) == float(reward)
        if terminated or truncated:
            break


def rollout(simulator, seed: int = 0, steps: int = 6) -> list[np.ndarray]:
    """Observed histories, feedback and rewards of a fixed sequence of actions in the simulator's environment."""
    env = gym.make("SeqRec-v0", simulator=simulator, max_steps=steps)
    obs, _ = env.reset(seed=seed)
    trace = [obs["item_ids"].copy(), obs["feedback"].copy()]
    for action in np.random.default_rng(seed).integers(0, env.action_space.n, size=steps):
        obs, reward, terminated, truncated, _ = env.step(int(action))
        trace += [obs["item_ids"].copy(), obs["feedback"].copy(), np.float64(reward)]
        if terminated or truncated:
            break
    return trace


def assert_same_rollouts(a, b) -> None:
    for x, y in zip(rollout(a), rollout(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_h2rec_reads_the_world_catalogue_and_it_round_trips(world_logs, tmp_path):
    """By default H2Rec's content is the item table's features, which for world logs are the world's public
    item attributes, the same matrix a policy in the world reads (`world_item_content`)."""
    from recsim_env.encoders.item_text import world_item_content
    from recsim_env.world import UserWorld
    from simulators import SimulatorConfig, fit, load, save

    config = SimulatorConfig(**H2REC)
    assert config.content_source == "catalogue"
    simulator = fit(world_logs, config).simulator
    encoder = simulator.members[0].encoder
    np.testing.assert_allclose(encoder.item_text.numpy(), world_item_content(UserWorld()), rtol=0, atol=1e-6)
    assert int(encoder.item_codes.min()) >= 0
    loaded = load(save(simulator, tmp_path / "sim"))
    assert loaded.config.item_content == "auto"
    for member, reloaded in zip(simulator.members, loaded.members, strict=True):
        assert torch.equal(member.encoder.item_text, reloaded.encoder.item_text)
        assert torch.equal(member.encoder.item_codes, reloaded.encoder.item_codes)
    assert_same_rollouts(simulator, loaded)


def test_item_text_content_round_trips_through_a_saved_simulator(world_logs, tmp_path, monkeypatch):
    """`--item-text COLUMNS`: the columns' texts embedded (the sentence encoder replaced by fixed random
    vectors) are the encoder's content, saved in the simulator's weights."""
    from recsim_env.encoders import item_text
    from simulators import SimulatorConfig, fit, load, save

    monkeypatch.setenv("RECSIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(
        item_text,
        "embed",
        lambda texts: np.stack(
            [np.random.default_rng(zlib.crc32(t.encode())).normal(size=item_text.TEXT_DIM) for t in texts]
        ).astype(np.float32),
    )
    config = SimulatorConfig(**{**H2REC, "item_text": "category"})
    assert config.content_source == "text"
    simulator = fit(world_logs, config).simulator
    encoder = simulator.members[0].encoder
    assert encoder.config.item_text_dim == item_text.TEXT_DIM
    texts = item_text.item_texts(world_logs, "category")
    np.testing.assert_array_equal(encoder.item_text.numpy(), item_text.item_text_embeddings(texts))
    # Items of one category share a text, so their first-level code: the codes come from the text.
    category = world_logs.items["category"].to_numpy()
    codes = encoder.item_codes[:, 0].numpy()
    assert all(len(set(codes[category == c])) == 1 for c in np.unique(category))
    path = save(simulator, tmp_path / "sim")
    monkeypatch.setattr(item_text, "embed", None)  # loading never embeds: the content is in the weights
    loaded = load(path)
    assert loaded.config.item_text == "category"
    assert torch.equal(loaded.members[0].encoder.item_text, encoder.item_text)
    assert_same_rollouts(simulator, loaded)


def test_an_encoder_without_item_content_is_refused_with_the_option_to_give(world_logs):
    from recsim_env.errors import ArgumentError
    from simulators import SimulatorConfig, fit

    with pytest.raises(ArgumentError, match="--item-text COLUMNS"):
        fit(world_logs, SimulatorConfig(**H2REC, item_features=False))
    with pytest.raises(ArgumentError, match="needs item content"):
        fit(world_logs, SimulatorConfig(**H2REC, item_content="none"))
    with pytest.raises(ValueError, match="go together"):
        SimulatorConfig(item_content="text")
    with pytest.raises(ValueError, match="go together"):
        SimulatorConfig(item_content="none", item_text="title")
    with pytest.raises(ValueError, match="set item_features"):
        SimulatorConfig(item_content="catalogue", item_features=False)
