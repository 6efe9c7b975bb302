"""Environments from logs: `SeqRec-v0` with `simulator=` / `dataset=`, check_env, reproducibility."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import recsim_env  # noqa: F401  (registers the environments)
from tests.simulators.conftest import ML100K, TINY


def test_learned_env_passes_check_env(saved_simulator):
    env = gym.make("SeqRec-v0", simulator=str(saved_simulator), max_steps=10)
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert obs["item_ids"].shape == (20,)
    assert obs["feedback"].shape == (20, 6)  # the world's six signals, learned
    # Episodes start from a real user's history prefix.
    assert (obs["item_ids"] < 500).sum() > 0


def test_slates_and_reward_weights(saved_simulator):
    env = gym.make(
        "SeqRec-v0", simulator=str(saved_simulator), slate_size=3, reward={"click": 1.0, "watch_time": 0.01}
    )
    check_env(env.unwrapped, skip_render_check=True)
    env.reset(seed=1)
    for _ in range(5):
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert info["chosen_position"] in (-1, 0, 1, 2)
        assert reward == pytest.approx(info["feedback"][0] + 0.01 * info["feedback"][1], rel=1e-5)
        if terminated or truncated:
            break


def test_vector_env_reproduces_single_envs(saved_simulator):
    n, steps = 3, 30
    vec = gym.make_vec("SeqRec-v0", num_envs=n, simulator=str(saved_simulator), max_steps=8)
    actions = np.random.default_rng(0).integers(0, 500, size=(steps, n))
    vec_obs, _ = vec.reset(seed=5)
    singles = [gym.make("SeqRec-v0", simulator=str(saved_simulator), max_steps=8) for _ in range(n)]
    single_obs = [env.reset(seed=5 + i)[0] for i, env in enumerate(singles)]
    for i in range(n):
        np.testing.assert_array_equal(vec_obs["item_ids"][i], single_obs[i]["item_ids"])
    vec_rewards = []
    single_rewards = [[] for _ in range(n)]
    done_before = np.zeros(n, dtype=bool)
    for t in range(steps):
        _, rewards, term, trunc, _ = vec.step(actions[t])
        vec_rewards.append(rewards)
        for i, env in enumerate(singles):
            if done_before[i]:
                env.reset()  # the vector env autoresets on the next step (NEXT_STEP)
                single_rewards[i].append(0.0)
                continue
            _, r, _, _, _ = env.step(int(actions[t, i]))
            single_rewards[i].append(r)
        done_before = term | trunc
    np.testing.assert_allclose(np.array(vec_rewards).T, np.array(single_rewards))


def test_same_seed_same_rollout(saved_simulator):
    def run():
        env = gym.make("SeqRec-v0", simulator=str(saved_simulator))
        obs, _ = env.reset(seed=3)
        out = [obs["item_ids"].copy()]
        for a in range(20):
            obs, r, te, tr, info = env.step(a)
            out.append(info["feedback"].copy())
            if te or tr:
                break
        return out

    for a, b in zip(run(), run()):
        np.testing.assert_array_equal(a, b)


def test_dataset_learned_trains_once_and_caches(world_logs, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQREC_SIMULATOR_CACHE", str(tmp_path))
    path = tmp_path / "logs.parquet"
    world_logs.to_parquet(path)
    config = {**TINY, "epochs": 1}
    env = gym.make("SeqRec-v0", dataset=str(path), simulator="learned", simulator_config=config)
    check_env(env.unwrapped, skip_render_check=True)
    cached = list(tmp_path.glob("world-uniform-*/manifest.json"))
    assert len(cached) == 1
    # A second environment reuses the cached simulator (same fingerprint, no retraining).
    stamp = cached[0].stat().st_mtime_ns
    gym.make("SeqRec-v0", dataset=str(path), simulator_config=config)
    assert cached[0].stat().st_mtime_ns == stamp


def test_bad_arguments_are_refused(saved_simulator):
    with pytest.raises(ValueError, match="not both"):
        gym.make("SeqRec-v0", simulator=str(saved_simulator), world_config={})
    with pytest.raises(ValueError, match="uncertainty_penalty"):
        gym.make("SeqRec-v0", uncertainty_penalty=1.0)
    with pytest.raises(ValueError, match="ensemble"):
        # The tiny fixture has 2 members; one of them alone cannot report disagreement.
        import simulators

        sim = simulators.load(saved_simulator).simulators[0]
        gym.make("SeqRec-v0", simulator=sim, uncertainty_penalty=1.0)
    with pytest.raises(ValueError, match="simulator"):
        gym.make("SeqRec-v0", simulator=42)


def _ml100k():
    if not ML100K.is_dir():
        pytest.skip(f"MovieLens 100K not found at {ML100K}")
    from recsim_env.data import load

    return load(ML100K)


def test_ml100k_users_learned_env_passes_check_env(tmp_path, monkeypatch):
    """Fast: 150 MovieLens users (the whole catalogue), a tiny model."""
    data = _ml100k()
    monkeypatch.setenv("SEQREC_SIMULATOR_CACHE", str(tmp_path))
    subset = data.select_users(np.arange(150))
    config = {**TINY, "epochs": 1}
    env = gym.make(
        "SeqRec-v0", dataset=subset, simulator="learned", simulator_config=config, user_features=True
    )
    check_env(env.unwrapped, skip_render_check=True)
    assert env.unwrapped.signals == ("click", "rating")
    assert env.action_space.n == 1682
    # The users table's age (standardised), gender and occupation (one-hot); the zip code has too many values.
    names = env.unwrapped.user_model.schema.user_features.names
    assert names[0] == "age" and "gender=F" in names and "occupation=writer" in names
    assert not any(n.startswith("zip_code") for n in names)
    obs, _ = env.reset(seed=0)
    assert obs["user_features"].shape == (len(names),)
    assert obs["user_features"][1:].sum() == 2.0  # one gender, one occupation


@pytest.mark.slow
def test_ml100k_learned_env_passes_check_env(tmp_path, monkeypatch):
    _ml100k()
    monkeypatch.setenv("SEQREC_SIMULATOR_CACHE", str(tmp_path))
    config = {**TINY, "epochs": 1, "negative_rate": 0.5}
    env = gym.make("SeqRec-v0", dataset=str(ML100K), simulator="learned", simulator_config=config)
    check_env(env.unwrapped, skip_render_check=True)
    assert env.unwrapped.signals == ("click", "rating")
    assert env.action_space.n == 1682
    obs, _ = env.reset(seed=0)
    # Histories are real MovieLens prefixes: consumed items carry ratings in 1..5.
    real = obs["item_ids"] < 1682
    ratings = obs["feedback"][real & (obs["feedback"][:, 0] > 0), 1]
    assert ratings.size and ratings.min() >= 1 and ratings.max() <= 5


def test_the_cache_key_covers_the_side_tables_the_simulator_reads(world_logs):
    from recsim_env.data import LoggedInteractions
    from simulators import SimulatorConfig
    from simulators.env import fingerprint

    def edited(users, items):
        return LoggedInteractions(
            world_logs.frame,
            user_ids=world_logs.user_ids,
            item_ids=world_logs.item_ids,
            feedback_columns=world_logs.feedback_columns,
            items=items,
            users=users,
            name=world_logs.name,
        )

    users = world_logs.users.copy()
    users.iloc[0, users.columns.get_loc("feature_0")] += 1.0
    items = world_logs.items.assign(
        tags=[["a", "b"]] * len(world_logs.items)
    )  # lists: not hashable by pandas
    reads = SimulatorConfig(**TINY)
    ignores = SimulatorConfig(**TINY, user_features=False, item_features=False)
    for other in (edited(users, world_logs.items), edited(world_logs.users, items)):
        assert fingerprint(other, reads) != fingerprint(world_logs, reads)
        assert fingerprint(other, ignores) == fingerprint(world_logs, ignores)
