"""A learned simulator on a large catalogue: training and stepping score only candidates, never the catalogue."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env

import recsim_env  # noqa: F401  (registers the environments)
from recsim_env.envs.seqrec import SeqRecVectorEnv
from recsim_env.world import WorldConfig
from recsim_env.world.logging import log_world
from simulators import SimulatorConfig, fit
from simulators.response_model import ResponseModel
from tests.simulators.conftest import TINY

N_ITEMS = 10_000


def test_fit_and_env_on_a_large_catalogue_score_only_candidates(monkeypatch):
    logs = log_world(
        "softmax", steps=400, seed=0, progress=False, num_envs=16, world_config=WorldConfig(n_items=N_ITEMS)
    )
    assert logs.n_items == N_ITEMS
    widths: list[int] = []
    heads = ResponseModel.heads

    def recording_heads(self, state, candidates, item_table=None):
        widths.append(int(candidates.shape[-1]))
        return heads(self, state, candidates, item_table)

    monkeypatch.setattr(ResponseModel, "heads", recording_heads)
    result = fit(logs, SimulatorConfig(**{**TINY, "epochs": 1}))
    assert widths and set(widths) == {1}  # teacher forcing: one candidate (the exposed item) per target
    sim = result.simulator
    assert sim.n_items == N_ITEMS

    widths.clear()
    env = gym.make("SeqRec-v0", simulator=sim, slate_size=3, max_steps=5)
    check_env(env.unwrapped, skip_render_check=True)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([0, N_ITEMS // 2, N_ITEMS - 1]))
    assert widths and max(widths) <= 3  # a step scores the slate's items only
    assert np.isfinite(info["feedback"]).all()

    # The simulator's greedy policy ranks the catalogue in chunks: the same scores as one call.
    from simulators import greedy

    vec = SeqRecVectorEnv(num_envs=2, user_model=sim, history_len=sim.history_len, user_features=True)
    obs, _ = vec.reset(seed=1)
    policy = greedy.SimulatorGreedyPolicy(sim, slate_size=2, encode_user_features=False)
    whole = policy.scores(obs)
    monkeypatch.setattr(greedy, "SCORE_CHUNK_ITEMS", 3_000)
    np.testing.assert_allclose(policy.scores(obs), whole, rtol=1e-5, atol=1e-7)
    assert policy.act(obs).shape == (2, 2)
