"""Tied action heads: logits come from the encoder's item table, tied policies train, save and load,
and the untied head stays the default (the only one on RLlib)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.heads import TiedItemHead
from agents.training import TrainConfig
from recsim_env import encoders


def _encoder():
    return encoders.build("sasrec", {"n_items": 30, "max_len": 5, "d_model": 8})


def test_logits_follow_the_item_table():
    torch.manual_seed(0)
    encoder = _encoder()
    head = TiedItemHead(4, encoder)
    hidden = torch.randn(3, 4)
    logits = head(hidden)
    assert logits.shape == (3, 30)
    expected = head.projection(hidden) @ encoder.item_table().T + head.bias
    torch.testing.assert_close(logits, expected)
    with torch.no_grad():
        encoder.item_embedding.weight[7] += 1.0  # moving item 7's embedding moves only its logit
    changed = (head(hidden) - logits).abs().amax(0) > 0
    assert changed.nonzero().flatten().tolist() == [7]
    assert not any(name.startswith("_encoder") for name, _ in head.named_parameters())


def test_gradients_reach_the_item_embeddings():
    encoder = _encoder()
    head = TiedItemHead(4, encoder)
    head(torch.randn(2, 4)).logsumexp(1).sum().backward()
    assert encoder.item_embedding.weight.grad is not None


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_tied_policies_train_save_and_load(tmp_path, algo):
    from agents import load_policy
    from agents.training import train

    extra = {"n_steps": 32, "batch_size": 32} if algo == "ppo" else {"learning_starts": 50}
    config = TrainConfig(algo=algo, action_head="tied", stop_timesteps=200, num_envs=2, eval_interval=10_000, algo_config=extra,
                         env_config={"max_steps": 10})  # fmt: skip
    train(config, tmp_path / "run", progress=False)
    policy = load_policy(tmp_path / "run")
    state = policy.model.policy.state_dict()
    assert any("projection" in key for key in state)
    assert not any("_encoder" in key for key in state)  # the head does not hold the encoder again
    obs = {"item_ids": np.full((2, 20), 500), "feedback": np.zeros((2, 20, 6), np.float32),
           "session_step": np.zeros((2, 1), np.int64), "gap_days": np.zeros((2, 1), np.float32)}  # fmt: skip
    again = load_policy(tmp_path / "run")
    np.testing.assert_array_equal(policy.act(obs, deterministic=True), again.act(obs, deterministic=True))


def test_the_untied_head_is_the_default_and_rllib_has_only_it():
    fields = {k: v for k, v in TrainConfig().to_dict().items() if k != "action_head"}
    assert TrainConfig.from_dict(fields, where="test").action_head == "mlp"  # configs saved before the option
    with pytest.raises(ValueError, match="action_head"):
        TrainConfig(backend="rllib", action_head="tied")
    with pytest.raises(ValueError, match="action_head"):
        TrainConfig(action_head="wide")
