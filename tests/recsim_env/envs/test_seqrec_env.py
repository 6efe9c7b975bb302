"""SeqRec-v0: the Gymnasium contract, seeding, vectorization, arguments and episode semantics."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import recsim_env  # noqa: F401  (registers the environments)
from recsim_env.envs import SeqRecEnv, SeqRecVectorEnv
from recsim_env.world import SIGNALS

SEQREC_IDS = sorted(env_id for env_id in gym.registry if env_id.startswith("SeqRec"))


@pytest.mark.parametrize("slate_size", [1, 5])
def test_gymnasium_check_env(slate_size):
    env = gym.make("SeqRec-v0", slate_size=slate_size)
    check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("slate_size", [1, 5])
def test_stable_baselines3_check_env(slate_size):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    sb3_check_env(gym.make("SeqRec-v0", slate_size=slate_size).unwrapped, warn=False)


def test_make_with_no_arguments_works_on_the_world():
    env = gym.make("SeqRec-v0")
    obs, info = env.reset(seed=0)
    assert env.action_space == gym.spaces.Discrete(500)
    assert set(obs) == {"item_ids", "feedback", "session_step", "gap_days"}
    assert obs["feedback"].shape == (20, len(SIGNALS))
    assert obs in env.observation_space
    assert isinstance(info["user_id"], int)


def _rollout(env, seed, n_steps, action_seed=123):
    env.action_space.seed(action_seed)
    obs, _ = env.reset(seed=seed)
    trace = [obs]
    for _ in range(n_steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        trace.append((obs, reward, terminated, truncated, info))
        if terminated or truncated:
            obs, _ = env.reset()
            trace.append(obs)
    return trace


@pytest.mark.parametrize("env_id", SEQREC_IDS)
def test_two_envs_with_the_same_seed_give_the_same_rollout(env_id):
    a = _rollout(gym.make(env_id), seed=7, n_steps=150)
    b = _rollout(gym.make(env_id), seed=7, n_steps=150)
    c = _rollout(gym.make(env_id), seed=8, n_steps=150)
    assert _equal(a, b)
    assert not _equal(a, c)


def _equal(x, y) -> bool:
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(_equal(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return len(x) == len(y) and all(_equal(u, v) for u, v in zip(x, y))
    return bool(np.array_equal(x, y))


@pytest.mark.parametrize("slate_size,sessions", [(1, 1), (3, 2)])
def test_vector_env_matches_single_envs_step_for_step(slate_size, sessions):
    """sub-env i of a vector env seeded s behaves exactly like a single env seeded s + i, autoresets included."""
    n_envs, n_steps = 4, 120
    kwargs = dict(slate_size=slate_size, sessions_per_episode=sessions, max_steps=15, retention_weight=1.0)
    vector = gym.make_vec("SeqRec-v0", num_envs=n_envs, **kwargs)
    singles = [gym.make("SeqRec-v0", **kwargs) for _ in range(n_envs)]
    rng = np.random.default_rng(0)
    actions = np.stack([rng.permutation(500)[:slate_size] for _ in range(n_steps * n_envs)]).reshape(
        n_steps, n_envs, slate_size
    )
    vobs, _ = vector.reset(seed=11)
    for i, env in enumerate(singles):
        obs, _ = env.reset(seed=11 + i)
        for key in obs:
            np.testing.assert_array_equal(vobs[key][i], obs[key])
    needs_reset = [False] * n_envs
    episode_ends = 0
    for t in range(n_steps):
        vobs, vrew, vterm, vtrunc, vinfo = vector.step(actions[t] if slate_size > 1 else actions[t, :, 0])
        for i, env in enumerate(singles):
            if needs_reset[i]:  # NEXT_STEP autoreset: this step resets sub-env i
                obs, reward, term, trunc = env.reset()[0], 0.0, False, False
                needs_reset[i] = False
            else:
                action = actions[t, i] if slate_size > 1 else int(actions[t, i, 0])
                obs, reward, term, trunc, info = env.step(action)
                np.testing.assert_array_equal(vinfo["feedback"][i], info["feedback"])
                if "return_gap" in info:
                    assert vinfo["_return_gap"][i] and vinfo["return_gap"][i] == info["return_gap"]
                needs_reset[i] = term or trunc
                episode_ends += term or trunc
            for key in obs:
                np.testing.assert_array_equal(vobs[key][i], obs[key], err_msg=f"step {t} env {i} key {key}")
            assert vrew[i] == pytest.approx(reward, abs=0, rel=1e-12)
            assert (vterm[i], vtrunc[i]) == (term, trunc)
    assert episode_ends >= 4  # the check covered autoresets


def test_reward_is_the_weighted_feedback():
    weights = {"click": 1.0, "watch_time": 0.01, "hate": -2.0}
    env = gym.make("SeqRec-v0", reward=weights)
    env.reset(seed=3)
    for item in range(40):
        _, reward, terminated, truncated, info = env.step(item)
        expected = sum(w * info["feedback"][SIGNALS.index(name)] for name, w in weights.items())
        assert reward == pytest.approx(expected, rel=1e-6)
        if terminated or truncated:
            env.reset()


def test_costs_follow_the_documented_convention():
    env = gym.make("SeqRec-v0")
    env.reset(seed=0)
    for item in range(30):
        _, _, terminated, truncated, info = env.step(item)
        f, cost = info["feedback"], info["costs"]
        assert cost[SIGNALS.index("click")] == 1.0 - f[SIGNALS.index("click")]
        assert cost[SIGNALS.index("like")] == 1.0 - f[SIGNALS.index("like")]
        assert cost[SIGNALS.index("hate")] == f[SIGNALS.index("hate")]
        assert cost[SIGNALS.index("watch_time")] == 0.0
        if terminated or truncated:
            env.reset()


def test_history_shifts_in_the_shown_slate_with_its_feedback():
    env = gym.make("SeqRec-v0", slate_size=3, history_len=10)
    obs, _ = env.reset(seed=1)
    before = obs["item_ids"].copy()
    obs, *_, info = env.step(np.array([4, 9, 2]))
    np.testing.assert_array_equal(obs["item_ids"], np.r_[before[3:], [4, 9, 2]])
    np.testing.assert_array_equal(obs["feedback"][-3:].sum(axis=0), info["feedback"])
    assert obs["session_step"][0] == 1


def test_short_histories_are_left_padded_with_the_pad_id():
    env = gym.make("SeqRec-v0", history_len=30, world_config={"history_len_at_start": 4})
    obs, _ = env.reset(seed=0)
    assert np.all(obs["item_ids"][:26] == 500) and np.all(obs["item_ids"][26:] < 500)
    assert np.all(obs["feedback"][:26] == 0)


def test_truncation_at_max_steps_and_termination_on_leaving():
    env = gym.make("SeqRec-v0", max_steps=3)
    outcomes = []
    for seed in range(60):
        env.reset(seed=seed)
        for step in range(3):
            _, _, terminated, truncated, info = env.step(step)
            if terminated or truncated:
                outcomes.append((step, terminated, truncated))
                assert "return_gap" in info and info["return_gap"] > 0
                break
    assert all(truncated for step, _, truncated in outcomes if step == 2 and not _)
    assert any(terminated for _, terminated, _ in outcomes)  # users do leave
    assert any(truncated for _, _, truncated in outcomes)
    assert all(not (terminated and truncated) for _, terminated, truncated in outcomes)


def test_several_sessions_per_episode_put_the_gap_in_the_observation_and_reward():
    env = gym.make("SeqRec-v0", sessions_per_episode=3, max_steps=5, retention_weight=10.0)
    obs, _ = env.reset(seed=2)
    assert obs["gap_days"][0] == 0.0
    sessions_seen, gaps = {0}, []
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(int(obs["session_step"][0]))
        done = terminated or truncated
        if "return_gap" in info:
            gaps.append(info["return_gap"])
            base = info["feedback"][SIGNALS.index("click")]
            assert reward == pytest.approx(base + 10.0 / (1.0 + info["return_gap"]))
            if not done:
                assert obs["session_step"][0] == 0
                assert obs["gap_days"][0] == pytest.approx(info["return_gap"], rel=1e-6)
        sessions_seen.add(info["session"])
    assert sessions_seen == {0, 1, 2} and len(gaps) == 3


def test_user_features_are_optional():
    env = gym.make("SeqRec-v0", user_features=True)
    obs, _ = env.reset(seed=0)
    assert obs["user_features"].shape == env.observation_space["user_features"].shape
    assert obs in env.observation_space


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"reward": "clicks"}, r"reward.*unknown signal.*'clicks'"),
        ({"reward": {"click": 1.0, "dwell": 0.5}}, r"reward.*'dwell'"),
        ({"slate_size": 501, "history_len": 600}, r"slate_size.*501.*500 items"),
        ({"max_steps": 0}, r"max_steps"),
        ({"sessions_per_episode": 1.5}, r"sessions_per_episode"),
        ({"world_config": {"n_itemz": 3}}, r"world_config.*n_itemz"),
        ({"render_mode": "human"}, r"render_mode"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gym.make("SeqRec-v0", **kwargs)


@pytest.mark.parametrize(
    "slate_size,action,match",
    [
        (1, 500, "outside"),
        (1, -1, "outside"),
        (1, 2.5, "wrong shape or type"),
        (1, "3", "wrong shape or type"),
        (3, [1, 2], "wrong shape or type"),
        (3, [1, 1, 2], "duplicate"),
        (3, [1, 2, 999], "outside"),
    ],
)
def test_invalid_actions_raise_value_errors_naming_action_and_space(slate_size, action, match):
    env = gym.make("SeqRec-v0", slate_size=slate_size)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=match) as error:
        env.step(action)
    assert "action space" in str(error.value) and repr(action) in str(error.value)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-1000, 1000), min_size=2, max_size=2))
def test_any_out_of_catalogue_or_duplicate_slate_is_rejected(items):
    env = SeqRecEnv(slate_size=2)
    env.reset(seed=0)
    valid = all(0 <= i < 500 for i in items) and items[0] != items[1]
    if valid:
        env.step(np.array(items))
    else:
        with pytest.raises(ValueError, match="invalid action"):
            env.step(np.array(items))


@settings(max_examples=30, deadline=None)
@given(slate_size=st.integers(-3, 700), n_items=st.integers(1, 600))
def test_slate_size_is_validated_against_the_catalogue(slate_size, n_items):
    kwargs = dict(slate_size=slate_size, history_len=max(slate_size, 1))
    world = {"n_items": n_items, "n_categories": 1, "n_users": 10, "history_len_at_start": 0}
    if 1 <= slate_size <= n_items:
        env = SeqRecEnv(world_config=world, **kwargs)
        assert env.action_space.shape == (() if slate_size == 1 else (slate_size,))
    else:
        with pytest.raises(ValueError, match="slate_size"):
            SeqRecEnv(world_config=world, **kwargs)


def test_vector_env_validates_batched_actions_and_seeds():
    env = SeqRecVectorEnv(num_envs=3, slate_size=2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="duplicate"):
        env.step(np.array([[1, 2], [3, 3], [4, 5]]))
    with pytest.raises(ValueError, match="wrong shape"):
        env.step(np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="seed"):
        env.reset(seed=[1, 2])
    with pytest.raises(ValueError, match="num_envs"):
        SeqRecVectorEnv(num_envs=0)


def test_observations_handed_out_are_never_modified_later():
    env = SeqRecVectorEnv(num_envs=2, max_steps=2)
    first, _ = env.reset(seed=0)
    snapshot = {k: v.copy() for k, v in first.items()}
    for _ in range(6):
        env.step(np.array([1, 2]))
    for key in snapshot:
        np.testing.assert_array_equal(first[key], snapshot[key])


def test_render_ansi_describes_the_last_step():
    env = gym.make("SeqRec-v0", render_mode="ansi")
    env.reset(seed=0)
    env.step(7)
    text = env.render()
    assert "shown [7]" in text and "click=" in text


def test_sb3_ppo_trains_for_2048_steps():
    from stable_baselines3 import PPO

    env = gym.make("SeqRec-v0")
    model = PPO("MultiInputPolicy", env, n_steps=512, batch_size=128, n_epochs=2, seed=0, device="cpu")
    model.learn(total_timesteps=2048)
    assert model.num_timesteps >= 2048
    action, _ = model.predict(env.reset(seed=0)[0], deterministic=True)
    assert env.action_space.contains(int(action))


def test_slate_action_spaces_sample_and_contain_only_distinct_items():
    env = gym.make("SeqRec-v0", slate_size=5)
    env.action_space.seed(0)
    samples = np.stack([env.action_space.sample() for _ in range(3000)])
    assert np.all(np.sort(samples, axis=1)[:, 1:] != np.sort(samples, axis=1)[:, :-1])
    assert all(env.action_space.contains(s) for s in samples[:100])
    assert not env.action_space.contains(np.array([1, 1, 2, 3, 4]))
    assert isinstance(env.action_space, gym.spaces.MultiDiscrete)  # what SB3 and RLlib expect
    vector = gym.make_vec("SeqRec-v0", num_envs=8, slate_size=3)
    vector.reset(seed=0)
    vector.action_space.seed(0)
    for _ in range(50):
        vector.step(vector.action_space.sample())  # never a duplicate, so never an error
