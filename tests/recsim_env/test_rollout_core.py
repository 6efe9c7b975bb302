"""`recsim_env.rollout.run_episodes`: budgets and quotas, autoreset, what the observer sees, policy calls."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from recsim_env.envs.seqrec import SeqRecVectorEnv
from recsim_env.errors import ArgumentError
from recsim_env.policies import UniformPolicy
from recsim_env.rollout import StepObserver, VectorStep, run_episodes


class Countdown:
    """A vector env whose sub-env i ends every episode after `lengths[i]` real steps, reward 1 each.

    It counts the real steps and the episodes each sub-env has played, so a test can compare them with
    what the observer was told. Under NEXT_STEP a sub-env that ended is reset by the next step (reward
    0, action ignored); under SAME_STEP it is reset within the step that ends it.
    """

    def __init__(self, lengths, mode=AutoresetMode.NEXT_STEP, slate_size=1):
        self.lengths = np.asarray(lengths)
        self.num_envs = len(self.lengths)
        self.metadata = {"autoreset_mode": mode}
        self.single_action_space = spaces.Discrete(10) if slate_size == 1 else spaces.MultiDiscrete([10] * 2)
        self.t = np.zeros(self.num_envs, dtype=int)
        self.real_steps = np.zeros(self.num_envs, dtype=int)
        self.episodes = np.zeros(self.num_envs, dtype=int)
        self.needs_reset = np.zeros(self.num_envs, dtype=bool)
        self.user_state_reads = 0
        self.reset_seed = None

    @property
    def user_state(self):
        self.user_state_reads += 1
        return {"t": self.t.copy()}

    def _obs(self):
        return {"item_ids": self.t[:, None].copy()}

    def reset(self, *, seed=None):
        self.reset_seed = seed
        self.t[:] = 0
        return self._obs(), {"user_id": np.arange(self.num_envs)}

    def step(self, actions):
        resetting = self.needs_reset.copy()
        self.t[resetting] = 0
        stepping = ~resetting
        self.t[stepping] += 1
        self.real_steps += stepping
        terminated = stepping & (self.t == self.lengths)
        self.episodes += terminated
        rewards = stepping.astype(np.float64)
        if self.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP:
            self.t[terminated] = 0
        else:
            self.needs_reset = terminated.copy()
        return self._obs(), rewards, terminated, np.zeros(self.num_envs, dtype=bool), {}


class Log(StepObserver):
    def __init__(self):
        self.steps: list[VectorStep] = []
        self.first_obs = None

    def on_reset(self, obs, info):
        self.first_obs = obs

    def on_step(self, step):
        self.steps.append(step)

    def stacked(self, field):
        return np.stack([getattr(step, field) for step in self.steps])


def zeros(obs):
    return np.zeros(len(obs["item_ids"]), dtype=np.int64)


def test_per_env_quota_counts_a_fixed_share_of_every_sub_env():
    env, log = Countdown([1, 5, 2]), Log()
    run_episodes(env, act=zeros, observer=log, seed=3, n_episodes=7)
    counted = log.stacked("counted")
    # 7 episodes over 3 sub-envs: 3, 2, 2, although sub-env 0 ends four times as often as sub-env 1.
    np.testing.assert_array_equal(counted.sum(axis=0), [3, 2, 2])
    # It stops at the step that pays the last one: sub-env 1's second episode, after 2 * (5 + 1) - 1 steps.
    assert len(log.steps) == 11 and counted[-1, 1]
    # Sub-envs that have paid keep stepping (live) without being counted.
    assert log.stacked("live")[:, 0].sum() > 3 * 1
    assert env.reset_seed == 3


def test_first_done_counts_the_first_episodes_to_end_lowest_index_first():
    env, log = Countdown([2, 2, 3]), Log()
    run_episodes(env, act=zeros, observer=log, seed=0, n_episodes=3, quota="first_done")
    counted = log.stacked("counted")
    assert counted.sum() == 3
    # Step 2 ends sub-envs 0 and 1; step 3 ends sub-env 2: all three counted, then it stops.
    np.testing.assert_array_equal(np.flatnonzero(counted.any(axis=1)), [1, 2])
    env, log = Countdown([2, 2, 3]), Log()
    run_episodes(env, act=zeros, observer=log, seed=0, n_episodes=1, quota="first_done")
    np.testing.assert_array_equal(log.stacked("counted"), [[False, False, False], [True, False, False]])
    np.testing.assert_array_equal(log.steps[-1].done, [True, True, False])  # ended, but not counted


def test_next_step_autoreset_the_observer_sees_exactly_the_real_steps():
    env, log = Countdown([1, 3, 2, 4]), Log()
    run_episodes(env, act=zeros, observer=log, seed=0, n_episodes=8)
    live, reset, done = log.stacked("live"), log.stacked("reset"), log.stacked("done")
    np.testing.assert_array_equal(reset[0], False)
    np.testing.assert_array_equal(reset[1:], done[:-1])  # the step after an episode ends resets it
    np.testing.assert_array_equal(live, ~reset)
    np.testing.assert_array_equal(live.sum(axis=0), env.real_steps)
    np.testing.assert_array_equal(log.stacked("rewards")[reset], 0.0)  # a reset took no real step
    np.testing.assert_array_equal(log.stacked("counted").sum(axis=0), [2, 2, 2, 2])
    assert (env.episodes >= 2).all()


def test_same_step_autoreset_every_sub_env_steps_every_time():
    env, log = Countdown([1, 3], mode=AutoresetMode.SAME_STEP), Log()
    run_episodes(env, act=zeros, observer=log, seed=0, n_episodes=4)
    assert len(log.steps) == 6  # sub-env 1's second episode ends at step 6
    np.testing.assert_array_equal(log.stacked("live"), True)
    np.testing.assert_array_equal(log.stacked("reset"), False)
    np.testing.assert_array_equal(log.stacked("counted").sum(axis=0), [2, 2])
    np.testing.assert_array_equal(env.real_steps, [6, 6])


def test_step_budgets_count_live_steps_or_env_steps():
    env, log = Countdown([1, 4, 4]), Log()
    run_episodes(env, act=zeros, observer=log, seed=0, n_steps=7)
    live = log.stacked("live")
    # Steps: 3 live, then 2 (sub-env 0 resets), then 3 but only 2 are still owed: the first two.
    assert live.sum() == 7 and len(log.steps) == 3
    np.testing.assert_array_equal(live[-1], [True, True, False])
    np.testing.assert_array_equal(log.stacked("counted"), False)
    env, log = Countdown([1, 4, 4]), Log()
    run_episodes(env, act=zeros, observer=log, seed=0, n_steps=7, exact_steps=False)
    assert log.stacked("live").sum() == 8 and len(log.steps) == 3
    env, log = Countdown([1, 4, 4]), Log()
    run_episodes(env, act=zeros, observer=log, seed=0, n_vector_steps=5)
    # 5 calls of 3 sub-envs, less the resets: sub-env 0 at steps 2 and 4, sub-envs 1 and 2 at step 5.
    assert len(log.steps) == 5 and log.stacked("live").sum() == 5 * 3 - 4


class Spy(UniformPolicy):
    """A uniform policy that records how it was called."""

    def __init__(self, n_items, slate_size=1, reads_state=False):
        super().__init__(n_items, slate_size)
        self.needs_user_state = reads_state
        self.calls = []
        self.seeds = []

    def seed(self, seed):
        self.seeds.append(seed)
        super().seed(seed)

    def act(self, obs, deterministic=False, **kwargs):
        self.calls.append((deterministic, kwargs))
        return super().act(obs, deterministic, **kwargs)


@pytest.mark.parametrize("reads_state", [False, True])
def test_a_policy_is_reseeded_and_given_the_user_state_only_when_it_reads_it(reads_state):
    env, policy = Countdown([2, 3]), Spy(10, reads_state=reads_state)
    log = Log()
    run_episodes(env, policy=policy, observer=log, seed=5, n_episodes=2, deterministic=True)
    assert policy.seeds == [5]
    assert all(deterministic for deterministic, _ in policy.calls)
    if reads_state:
        assert env.user_state_reads == len(policy.calls) == len(log.steps)
        assert all(set(kwargs) == {"user_state"} for _, kwargs in policy.calls)
    else:
        assert env.user_state_reads == 0 and all(kwargs == {} for _, kwargs in policy.calls)
    assert log.steps[0].actions.shape == (2,)  # single items: [N], not [N, 1]
    env, log = Countdown([2, 3], slate_size=2), Log()
    run_episodes(env, policy=Spy(10, slate_size=2), observer=log, seed=5, n_episodes=2)
    assert log.steps[0].actions.shape == (2, 2)


def test_the_seqrec_env_observer_sees_resets_as_no_steps():
    env, log = SeqRecVectorEnv(num_envs=4, max_steps=3, sessions_per_episode=1), Log()
    run_episodes(env, policy=UniformPolicy(500), observer=log, seed=1, n_episodes=8)
    reset = log.stacked("reset")
    assert reset.any()
    np.testing.assert_array_equal(reset[1:], log.stacked("done")[:-1])
    positions = np.stack([step.info["chosen_position"] for step in log.steps])
    np.testing.assert_array_equal(positions[reset], -1)  # the env's own mark of an ignored action
    assert log.stacked("counted").sum() == 8


def test_bad_arguments_name_what_is_wrong():
    env = Countdown([1])
    with pytest.raises(ArgumentError, match="exactly one of n_episodes, n_steps, n_vector_steps"):
        run_episodes(env, act=zeros, observer=Log(), seed=0)
    with pytest.raises(ArgumentError, match="exactly one of n_episodes"):
        run_episodes(env, act=zeros, observer=Log(), seed=0, n_episodes=1, n_steps=1)
    with pytest.raises(ArgumentError, match="exactly one of policy and act"):
        run_episodes(env, observer=Log(), seed=0, n_episodes=1)
    with pytest.raises(ArgumentError, match="quota"):
        run_episodes(env, act=zeros, observer=Log(), seed=0, n_episodes=1, quota="fair")
    with pytest.raises(ArgumentError, match="n_steps"):
        run_episodes(env, act=zeros, observer=Log(), seed=0, n_steps=0)
    with pytest.raises(ArgumentError, match="observer"):
        run_episodes(env, act=zeros, observer=print, seed=0, n_steps=1)
    env.metadata["autoreset_mode"] = AutoresetMode.DISABLED
    with pytest.raises(ArgumentError, match="autoreset mode"):
        run_episodes(env, act=zeros, observer=Log(), seed=0, n_steps=1)
