"""`SequenceFeaturesExtractor`: every project encoder plugs into SB3's MultiInputPolicy."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

pytest.importorskip("stable_baselines3")
from stable_baselines3 import PPO  # noqa: E402

from agents.sb3 import SequenceFeaturesExtractor  # noqa: E402
from recsim_env import encoders  # noqa: E402

N_ITEMS, HISTORY, SIGNALS = 6, 5, 2


@pytest.fixture(autouse=True)
def single_torch_thread():
    """Tiny networks: one thread is as fast, and does not thrash on a shared, busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class NextItemEnv(gym.Env):
    """Stub recommendation env: reward 1 when the action is the successor (mod N) of the last item shown.

    Observation keys and dtypes follow SeqRec-v0's: left-padded `item_ids` (pad = N), `feedback`,
    `session_step`, `gap_days`, `user_features`. The best policy is known: always recommend last + 1.
    """

    def __init__(self, user_features: bool = True) -> None:
        entries = {
            "item_ids": spaces.Box(0, N_ITEMS, shape=(HISTORY,), dtype=np.int64),
            "feedback": spaces.Box(-np.inf, np.inf, shape=(HISTORY, SIGNALS), dtype=np.float32),
            "session_step": spaces.Box(0, 10, shape=(1,), dtype=np.int64),
            "gap_days": spaces.Box(0.0, np.inf, shape=(1,), dtype=np.float32),
        }
        if user_features:
            entries["user_features"] = spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
        self.observation_space = spaces.Dict(entries)
        self.action_space = spaces.Discrete(N_ITEMS)

    def _obs(self):
        obs = {
            "item_ids": self.items.copy(),
            "feedback": self.feedback.copy(),
            "session_step": np.array([self.t], dtype=np.int64),
            "gap_days": np.array([0.5], dtype=np.float32),
        }
        if "user_features" in self.observation_space.spaces:
            obs["user_features"] = np.zeros(3, dtype=np.float32)
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.items = np.full(HISTORY, N_ITEMS, dtype=np.int64)
        self.items[-1] = self.np_random.integers(N_ITEMS)
        self.feedback = np.zeros((HISTORY, SIGNALS), dtype=np.float32)
        return self._obs(), {}

    def step(self, action):
        reward = float(int(action) == (self.items[-1] + 1) % N_ITEMS)
        self.t += 1
        self.items = np.roll(self.items, -1)
        self.items[-1] = self.np_random.integers(N_ITEMS)  # the user moves on to a random item
        self.feedback = np.roll(self.feedback, -1, axis=0)
        self.feedback[-1] = [reward, 1.0]
        return self._obs(), reward, False, self.t >= 10, {}


def _ppo(env, extractor_kwargs: dict) -> PPO:
    """A small PPO whose policy reads observations through `SequenceFeaturesExtractor(**extractor_kwargs)`."""
    return PPO(
        "MultiInputPolicy",
        env,
        n_steps=32,
        batch_size=16,
        n_epochs=1,
        seed=0,
        device="cpu",
        policy_kwargs={
            "features_extractor_class": SequenceFeaturesExtractor,
            "features_extractor_kwargs": extractor_kwargs,
        },
    )


@pytest.mark.parametrize("name", sorted(encoders.ENCODERS))
def test_each_encoder_is_a_features_extractor_in_ppo(name):
    kwargs = {"encoder": name, "encoder_config": {"d_model": 16}, "scalar_dim": 4}
    if encoders.encoder_class(name).needs_item_content:  # H2Rec: semantic IDs of a content matrix
        kwargs["item_content"] = np.random.default_rng(0).normal(size=(N_ITEMS, 4)).astype(np.float32)
    env = NextItemEnv()
    model = _ppo(env, kwargs)
    extractor = model.policy.features_extractor
    assert isinstance(extractor, SequenceFeaturesExtractor)
    assert extractor.features_dim == 16 + 3 * 4  # state + session_step + gap_days + user_features
    assert extractor.encoder.config.n_items == N_ITEMS and extractor.encoder.config.feedback_dim == SIGNALS
    before = {k: v.clone() for k, v in extractor.encoder.state_dict().items()}
    model.learn(64)
    changed = [k for k, v in extractor.encoder.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "the encoder should train when not frozen"
    action, _ = model.predict(env.reset(seed=1)[0], deterministic=True)
    assert env.action_space.contains(int(action))


def test_frozen_checkpoint_encoder_does_not_change(tmp_path):
    torch.manual_seed(0)
    enc = encoders.build("sasrec", {"n_items": N_ITEMS, "max_len": HISTORY, "d_model": 8})
    encoders.save(tmp_path / "ckpt", enc, item_ids=list(range(N_ITEMS)))
    env = NextItemEnv(user_features=False)
    model = _ppo(env, {"checkpoint": str(tmp_path / "ckpt"), "freeze": True})
    extractor = model.policy.features_extractor
    assert extractor.features_dim == 8 + 2 * 8
    before = {k: v.clone() for k, v in extractor.encoder.state_dict().items()}
    model.learn(64)
    assert all(torch.equal(v, before[k]) for k, v in extractor.encoder.state_dict().items())
    assert not extractor.encoder.training
    # the scalar projections still learn
    assert any(p.requires_grad for p in extractor.scalar_projections.parameters())


def test_features_use_the_history_and_scalars():
    env = NextItemEnv()
    torch.manual_seed(0)
    extractor = SequenceFeaturesExtractor(
        env.observation_space, encoder="gru4rec", encoder_config={"d_model": 8}
    )
    extractor.eval()
    obs, _ = env.reset(seed=0)
    batch = {k: torch.as_tensor(v).float().unsqueeze(0) for k, v in obs.items()}  # SB3 hands over floats
    base = extractor(batch)
    other = dict(batch, item_ids=batch["item_ids"].clone())
    other["item_ids"][0, -1] = (other["item_ids"][0, -1] + 1) % N_ITEMS
    assert not torch.allclose(base[:, :8], extractor(other)[:, :8])
    later = dict(batch, session_step=batch["session_step"] + 5)
    assert torch.equal(base[:, :8], extractor(later)[:, :8])
    assert not torch.equal(base[:, 8:12], extractor(later)[:, 8:12])


def test_mismatched_catalogue_is_refused():
    env = NextItemEnv()
    with pytest.raises(ValueError, match="n_items"):
        SequenceFeaturesExtractor(
            env.observation_space,
            encoder=encoders.build("sasrec", {"n_items": N_ITEMS + 3, "max_len": HISTORY}),
        )


@pytest.mark.slow
def test_ppo_with_the_extractor_learns_the_successor_policy():
    env = NextItemEnv()
    model = PPO(
        "MultiInputPolicy",
        env,
        n_steps=256,
        batch_size=64,
        learning_rate=3e-3,
        seed=0,
        device="cpu",
        policy_kwargs={
            "features_extractor_class": SequenceFeaturesExtractor,
            "features_extractor_kwargs": {
                "encoder": "sasrec",
                "encoder_config": {"d_model": 16, "dropout": 0.0},
            },
        },
    )
    model.learn(6000)
    hits = 0
    obs, _ = env.reset(seed=123)
    for _ in range(200):
        action, _ = model.predict(obs, deterministic=True)
        obs, reward, _, truncated, _ = env.step(action)
        hits += reward
        if truncated:
            obs, _ = env.reset()
    assert hits / 200 > 0.8  # random play scores 1/6
