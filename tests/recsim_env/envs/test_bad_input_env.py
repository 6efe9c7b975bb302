"""Hostile input to the environments: every bad argument, action, seed and option is refused with the
library's own error type, names what is wrong, and leaves the environment as it was."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import recsim_env  # noqa: F401  (registers the environments)
from recsim_env.envs import SeqRecConfig, SeqRecEnv, SeqRecVectorEnv
from recsim_env.envs.lts import SeqRecLTSEnv
from recsim_env.errors import ActionError, ArgumentError
from recsim_env.world import UserWorld

N_ITEMS = 500
NAN = float("nan")


# ---------------------------------------------------------------------------------------------------
# Constructor arguments
# ---------------------------------------------------------------------------------------------------
SEQREC_BAD_ARGUMENTS = [
    ({"history_len": True}, r"^history_len must be an integer, got True"),
    ({"history_len": 0}, r"^history_len must be between 1 and 10,000"),
    ({"history_len": 20.0}, r"^history_len must be an integer"),
    ({"history_len": "20"}, r"^history_len must be an integer"),
    ({"history_len": 10**9}, r"^history_len must be between 1 and 10,000, got 1,000,000,000"),
    ({"slate_size": 0}, r"^slate_size must be between"),
    ({"slate_size": True}, r"^slate_size must be an integer"),
    ({"slate_size": 2.0}, r"^slate_size must be an integer"),
    ({"slate_size": 5, "history_len": 3}, r"^history_len \(3\) must be at least 'slate_size' \(5\)"),
    ({"slate_size": 3, "world_config": {"n_items": 2, "n_categories": 1}}, r"^slate_size \(3\).*2 items"),
    ({"max_steps": 0}, r"^max_steps must be between"),
    ({"max_steps": None}, r"^max_steps must be an integer, got None"),
    ({"max_steps": 10**7}, r"^max_steps must be between 1 and 1,000,000"),
    ({"sessions_per_episode": 0}, r"^sessions_per_episode must be between"),
    ({"sessions_per_episode": 1.5}, r"^sessions_per_episode must be an integer"),
    ({"max_steps": 1000, "sessions_per_episode": 10_000}, r"^max_steps x sessions_per_episode"),
    ({"retention_weight": NAN}, r"^retention_weight must be finite"),
    ({"retention_weight": math.inf}, r"^retention_weight must be finite"),
    ({"retention_weight": "1"}, r"^retention_weight must be a real number"),
    ({"retention_weight": True}, r"^retention_weight must be a real number"),
    ({"user_features": 1}, r"^user_features must be True or False"),
    ({"reward": "clicks"}, r"^reward names unknown signal\(s\) \['clicks'\]"),
    ({"reward": {"click": 1.0, "dwell": 1.0}}, r"^reward names unknown signal\(s\) \['dwell'\]"),
    ({"reward": {}}, r"^reward must weigh at least one signal"),
    ({"reward": {"click": NAN}}, r"^reward\['click'\] must be finite"),
    ({"reward": {"click": "1"}}, r"^reward\['click'\] must be a real number"),
    ({"reward": {"click": True}}, r"^reward\['click'\] must be a real number"),
    ({"reward": {1: 1.0}}, r"^reward: signal names must be strings"),
    ({"reward": 3}, r"^reward must be a signal name or a dict"),
    ({"reward": ""}, r"^reward must name a signal"),
    ({"world_config": {"n_itemz": 3}}, r"^world_config: unknown field\(s\) \['n_itemz'\]"),
    ({"world_config": {"n_items": 0}}, r"^world_config\.n_items must be between 1 and 1,000,000"),
    ({"world_config": {"n_items": 2**63}}, r"^world_config\.n_items must be between"),
    ({"world_config": {"n_items": 10**12}}, r"^world_config\.n_items must be between"),
    ({"world_config": {"n_categories": 0}}, r"^world_config\.n_categories must be between"),
    (
        {"world_config": {"n_items": 5, "n_categories": 6}},
        r"^world_config\.n_categories must be between 1 and 5",
    ),
    ({"world_config": {"position_bias": 1.5}}, r"^world_config\.position_bias must lie in \[0, 1\]"),
    ({"world_config": {"interest_drift": -0.1}}, r"^world_config\.interest_drift must lie in \[0, 1\]"),
    ({"world_config": {"affinity_weight": NAN}}, r"^world_config\.affinity_weight must be finite"),
    ({"world_config": {"mean_gap_days": 0}}, r"^world_config\.mean_gap_days must lie in \(0, inf\]"),
    ({"world_config": {"n_users": 2.5}}, r"^world_config\.n_users must be an integer"),
    ({"world_config": {"seed": -1}}, r"^world_config\.seed must be at least 0"),
    ({"world_config": "default"}, r"^world_config must be a WorldConfig"),
    ({"world_config": {}, "user_model": UserWorld()}, r"not both"),
    ({"user_model": object()}, r"^user_model\.n_items must be an integer"),
    ({"render_mode": "human"}, r"^render_mode must be one of \['ansi'\] or None"),
    ({"uncertainty_penalty": -1.0}, r"^uncertainty_penalty must lie in \[0, inf\]"),
]


@pytest.mark.parametrize("kwargs,match", SEQREC_BAD_ARGUMENTS, ids=[m for _, m in SEQREC_BAD_ARGUMENTS])
def test_bad_seqrec_arguments_are_refused_naming_the_argument(kwargs, match):
    with pytest.raises(ArgumentError, match=match):
        gym.make("SeqRec-v0", **kwargs)


VECTOR_BAD_ARGUMENTS = [
    ({"num_envs": 0}, r"^num_envs must be between 1 and 131,072"),
    ({"num_envs": True}, r"^num_envs must be an integer, got True"),
    ({"num_envs": 10**9}, r"^num_envs must be between 1 and 131,072, got 1,000,000,000"),
    ({"num_envs": 2.0}, r"^num_envs must be an integer"),
    ({"num_envs": "4"}, r"^num_envs must be an integer"),
    (
        {"num_envs": 2**17, "world_config": {"n_items": 1000, "warm_start_sampler": "table"}},
        r"^num_envs x n_items: 131,072 x 1,000",
    ),
    (
        {"num_envs": 2**17, "world_config": {"n_items": 1000, "history_len_at_start": 20}},
        r"^num_envs x start values per user: 131,072 x 980",
    ),
    ({"num_envs": 10_000, "max_steps": 10_000}, r"^num_envs x max_steps x sessions_per_episode"),
    ({"num_envs": 4, "history_len": -1}, r"^history_len must be between"),
]


@pytest.mark.parametrize("kwargs,match", VECTOR_BAD_ARGUMENTS, ids=[m for _, m in VECTOR_BAD_ARGUMENTS])
def test_bad_vector_arguments_are_refused_before_allocating(kwargs, match):
    with pytest.raises(ArgumentError, match=match):
        gym.make_vec("SeqRec-v0", **kwargs)


def test_a_render_mode_that_is_not_a_string_is_refused():
    # (gym.make itself fails on a non-string render_mode before calling the env)
    with pytest.raises(
        ArgumentError, match=r"^render_mode must be one of \['ansi'\] or None, got \['ansi'\]"
    ):
        SeqRecEnv(render_mode=["ansi"])


def test_seqrec_config_stores_plain_numbers():
    config = SeqRecConfig(history_len=np.int64(7), retention_weight=np.float32(0.5))
    assert type(config.history_len) is int and type(config.retention_weight) is float
    with pytest.raises(ArgumentError, match=r"^extra: unknown environment arguments \['foo'\]"):
        SeqRecConfig(extra={"foo": 1})


LTS_BAD_ARGUMENTS = [
    ({"n_documents": True}, r"^n_documents must be an integer"),
    ({"n_documents": 2.0}, r"^n_documents must be an integer"),
    ({"n_documents": 1}, r"^n_documents must be between 2 and 1,000,000"),
    ({"n_documents": 10**12}, r"^n_documents must be between"),
    ({"time_budget": 0}, r"^time_budget must be between"),
    ({"choc_means": []}, r"^choc_means must be a number or a non-empty sequence"),
    ({"choc_means": "abc"}, r"^choc_means must be a number or a non-empty sequence"),
    ({"choc_means": [1.0, NAN]}, r"^choc_means\[1\] must be finite"),
    ({"kale_std": -1.0}, r"^kale_std must lie in \[0, inf\]"),
    ({"innovation_std": "x"}, r"^innovation_std must be a real number"),
    ({"memory_discount_range": (0.7, 1.0)}, r"^memory_discount_range must lie in \[0, 1\)"),
    ({"memory_discount_range": (0.9,)}, r"^memory_discount_range must be a \(low, high\) pair"),
    ({"sensitivity_range": (0.6, 0.4)}, r"^sensitivity_range must be \(low, high\) with low <= high"),
]


@pytest.mark.parametrize("kwargs,match", LTS_BAD_ARGUMENTS, ids=[m for _, m in LTS_BAD_ARGUMENTS])
def test_bad_lts_arguments_are_refused_naming_the_argument(kwargs, match):
    with pytest.raises(ArgumentError, match=match):
        gym.make("SeqRecLTS-v0", **kwargs)


# ---------------------------------------------------------------------------------------------------
# Actions
# ---------------------------------------------------------------------------------------------------
def _ragged():
    return [[1], [1, 2]]


SINGLE_DISCRETE_BAD_ACTIONS = [
    (True, r"dtype bool"),
    (np.bool_(True), r"dtype bool"),
    (1.0, r"dtype float64"),
    (np.float32(1.0), r"dtype float32"),
    (np.array(1.0), r"dtype float64"),
    (NAN, r"dtype float64"),
    ("3", r"dtype <U1"),
    (None, r"dtype object"),
    (object(), r"dtype object"),
    (1 + 0j, r"dtype complex128"),
    (-1, r"item id outside \[0, 500\)"),
    (500, r"item id outside \[0, 500\)"),
    (np.int64(500), r"item id outside"),
    (np.uint64(2**64 - 1), r"item id outside"),
    (2**70, r"dtype object"),
    ([3], r"shape \(1,\), expected \(\)"),
    (np.array([[3]]), r"shape \(1, 1\), expected \(\)"),
    ([1, 2], r"shape \(2,\), expected \(\)"),
    (_ragged(), r"not an array of item ids"),
]


@pytest.mark.parametrize(
    "action,match", SINGLE_DISCRETE_BAD_ACTIONS, ids=[repr(a)[:30] for a, _ in SINGLE_DISCRETE_BAD_ACTIONS]
)
def test_single_discrete_env_refuses_bad_actions(action, match):
    env = gym.make("SeqRec-v0")
    env.reset(seed=0)
    with pytest.raises(
        ActionError, match=r"^action: invalid action .* for action space Discrete\(500\): .*" + match
    ):
        env.step(action)


SINGLE_SLATE_BAD_ACTIONS = [
    ([1, 2], r"shape \(2,\), expected \(3,\)"),
    ([1, 2, 3, 4], r"shape \(4,\), expected \(3,\)"),
    ([[1, 2, 3]], r"shape \(1, 3\), expected \(3,\)"),
    (5, r"shape \(\), expected \(3,\)"),
    ([1, 1, 2], r"duplicate items in a slate"),
    ([1, 2, 500], r"item id outside \[0, 500\)"),
    ([-1, 2, 3], r"item id outside"),
    ([1.0, 2.0, 3.0], r"dtype float64"),
    (np.full(3, NAN), r"dtype float64"),
    ([True, False, True], r"dtype bool"),
    (["1", "2", "3"], r"dtype <U1"),
    ([[1], [2, 3], [4]], r"not an array of item ids"),
]


@pytest.mark.parametrize(
    "action,match", SINGLE_SLATE_BAD_ACTIONS, ids=[repr(a)[:30] for a, _ in SINGLE_SLATE_BAD_ACTIONS]
)
def test_single_slate_env_refuses_bad_actions(action, match):
    env = gym.make("SeqRec-v0", slate_size=3)
    env.reset(seed=0)
    with pytest.raises(
        ActionError, match=r"^action: invalid action .* for action space SlateSpace.*" + match
    ):
        env.step(action)


def test_single_env_takes_every_integer_form_of_an_item():
    env = gym.make("SeqRec-v0")
    env.reset(seed=0)
    for action in (3, np.int64(3), np.uint8(3), np.array(3), np.array(3, dtype=np.int32)):
        env.step(action)
    slate_env = gym.make("SeqRec-v0", slate_size=3)
    slate_env.reset(seed=0)
    for action in ([4, 9, 2], np.array([4, 9, 2], dtype=np.uint16), (4, 9, 2)):
        slate_env.step(action)


VECTOR_DISCRETE_BAD_ACTIONS = [
    (np.arange(5), r"shape \(5,\), expected \(4,\)"),
    (np.arange(3), r"shape \(3,\), expected \(4,\)"),
    (np.zeros((4, 2), dtype=np.int64), r"shape \(4, 2\), expected \(4,\)"),
    (np.zeros((1, 4), dtype=np.int64), r"shape \(1, 4\), expected \(4,\)"),
    (3, r"shape \(\), expected \(4,\)"),
    (np.zeros(4), r"dtype float64"),
    (np.ones(4, dtype=bool), r"dtype bool"),
    (np.array([0, 1, 2, 500]), r"item id outside \[0, 500\)"),
    (np.array([0, 1, 2, -3]), r"item id outside"),
]


@pytest.mark.parametrize(
    "actions,match", VECTOR_DISCRETE_BAD_ACTIONS, ids=[m for _, m in VECTOR_DISCRETE_BAD_ACTIONS]
)
def test_vector_discrete_env_refuses_actions_of_another_shape_dtype_or_range(actions, match):
    env = gym.make_vec("SeqRec-v0", num_envs=4)
    env.reset(seed=0)
    with pytest.raises(ActionError, match=r"^actions: invalid action .*" + match):
        env.step(actions)


VECTOR_SLATE_BAD_ACTIONS = [
    (np.arange(4), r"shape \(4,\), expected \(4, 3\)"),
    (np.zeros((4, 2), dtype=np.int64), r"shape \(4, 2\), expected \(4, 3\)"),
    (np.arange(12).reshape(3, 4), r"shape \(3, 4\), expected \(4, 3\)"),  # transposed: not reshaped
    (np.arange(15).reshape(5, 3), r"shape \(5, 3\), expected \(4, 3\)"),
    (np.arange(12).reshape(4, 3) * 1.0, r"dtype float64"),
    (np.array([[1, 2, 3], [4, 5, 6], [7, 7, 8], [9, 10, 11]]), r"duplicate items in a slate"),
    (np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9], [9, 10, 999]]), r"item id outside"),
]


@pytest.mark.parametrize(
    "actions,match", VECTOR_SLATE_BAD_ACTIONS, ids=[m for _, m in VECTOR_SLATE_BAD_ACTIONS]
)
def test_vector_slate_env_refuses_bad_batches(actions, match):
    env = gym.make_vec("SeqRec-v0", num_envs=4, slate_size=3)
    env.reset(seed=0)
    with pytest.raises(ActionError, match=r"^actions: invalid action .*" + match):
        env.step(actions)


def test_vector_env_refuses_n_by_1_batches_for_single_items():
    """One-item actions of a vector env are exactly [N]: an [N, 1] batch is refused, not reshaped."""
    env = SeqRecVectorEnv(num_envs=4)
    env.reset(seed=3)
    with pytest.raises(ActionError, match=r"shape \(4, 1\), expected \(4,\)"):
        env.step(np.arange(4)[:, None])


LTS_BAD_ACTIONS = [
    (True, r"dtype bool"),
    (1.0, r"dtype float64"),
    (30, r"item id outside \[0, 30\)"),
    (-1, r"item id outside"),
    ("1", r"dtype <U1"),
    ([1], r"shape \(1,\), expected \(\)"),
]


@pytest.mark.parametrize("action,match", LTS_BAD_ACTIONS, ids=[repr(a) for a, _ in LTS_BAD_ACTIONS])
def test_lts_env_refuses_bad_actions(action, match):
    env = gym.make("SeqRecLTS-v0")
    env.reset(seed=0)
    with pytest.raises(ActionError, match=r"^action: invalid action .*Discrete\(30\).*" + match):
        env.step(action)


# ---------------------------------------------------------------------------------------------------
# reset: seed and options
# ---------------------------------------------------------------------------------------------------
SINGLE_BAD_RESETS = [
    ({"seed": -1}, r"^seed must be at least 0, got -1"),
    ({"seed": True}, r"^seed must be an integer, got True"),
    ({"seed": 1.5}, r"^seed must be an integer"),
    ({"seed": "1"}, r"^seed must be an integer"),
    ({"options": {"reset_mask": [True]}}, r"^options: unknown key\(s\) \['reset_mask'\]"),
    ({"options": [1]}, r"^options must be None or a dict"),
]


@pytest.mark.parametrize("env_id", ["SeqRec-v0", "SeqRecLTS-v0"])
@pytest.mark.parametrize("kwargs,match", SINGLE_BAD_RESETS, ids=[m for _, m in SINGLE_BAD_RESETS])
def test_single_env_reset_refuses_bad_seeds_and_options(env_id, kwargs, match):
    env = gym.make(env_id)
    with pytest.raises(ArgumentError, match=match):
        env.reset(**kwargs)
    env.reset(seed=np.int64(3), options={})  # numpy seeds and empty options are fine


VECTOR_BAD_RESETS = [
    ({"seed": [1, 2]}, r"^seed has 2 seeds for 4 envs"),
    ({"seed": "abcd"}, r"^seed must be None, a non-negative integer or a list of 4"),
    ({"seed": [0, 1, 2, -1]}, r"^seed\[3\] must be at least 0"),
    ({"seed": [0, 1, 2, True]}, r"^seed\[3\] must be an integer"),
    ({"seed": -5}, r"^seed must be at least 0"),
    ({"seed": 2.0}, r"^seed must be None, a non-negative integer"),
    ({"options": {"reset_mask": np.ones(4, dtype=bool)}}, r"^options: unknown key\(s\)"),
]


@pytest.mark.parametrize("kwargs,match", VECTOR_BAD_RESETS, ids=[m for _, m in VECTOR_BAD_RESETS])
def test_vector_env_reset_refuses_bad_seeds_and_options(kwargs, match):
    env = SeqRecVectorEnv(num_envs=4)
    with pytest.raises(ArgumentError, match=match):
        env.reset(**kwargs)
    env.reset(seed=[0, None, np.int64(2), 3])


# ---------------------------------------------------------------------------------------------------
# Random actions: a correct step or an ActionError, nothing else
# ---------------------------------------------------------------------------------------------------
DTYPES = st.sampled_from(
    [np.int64, np.int32, np.int8, np.uint8, np.uint64, np.float64, np.float32, np.bool_, np.complex64]
)


def _arrays(max_dims: int):
    def values(dtype):
        dtype = np.dtype(dtype)
        if dtype.kind == "f":
            elements = st.one_of(
                st.floats(-2.0, N_ITEMS + 2.0, width=dtype.itemsize * 8), st.just(NAN), st.just(math.inf)
            )
        elif dtype.kind in "iu":
            info = np.iinfo(dtype)
            small = st.integers(max(info.min, -3), min(info.max, N_ITEMS + 3))
            elements = st.one_of(small, st.integers(info.min, info.max))
        else:
            elements = None
        return elements

    return DTYPES.flatmap(
        lambda dtype: hnp.arrays(
            dtype,
            hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=1, max_side=5),
            elements=values(dtype),
        )
    )


def _python_actions():
    return st.one_of(
        st.integers(-(2**70), 2**70),
        st.booleans(),
        st.floats(allow_nan=True),
        st.none(),
        st.text(max_size=3),
        st.lists(st.integers(-3, N_ITEMS + 3), max_size=6),
        st.lists(st.lists(st.integers(0, 10), max_size=3), max_size=3),  # often ragged
    )


def _near_valid(shape):
    """Integer arrays of `shape` (sometimes one longer) of distinct ids in range, of several dtypes."""
    ids = st.integers(0, N_ITEMS - 1)  # out-of-range ids come from the other strategies
    shapes = st.sampled_from([shape, shape, shape, shape[:-1] + (shape[-1] + 1,) if shape else (1,)])
    dtypes = st.sampled_from([np.int64, np.int32, np.uint16])
    return st.builds(
        lambda a, dtype: a.astype(dtype), hnp.arrays(np.int64, shapes, elements=ids, unique=True), dtypes
    )


def _valid(action, shape, slate_size, batched, ignored=None):
    """The contract, written independently of the env: is `action` a valid action? Rows `ignored`
    (sub-envs of a vector env that reset this step) need the batch's shape and dtype only."""
    try:
        array = np.asarray(action)
    except ValueError:
        return False
    if array.dtype.kind not in "iu":
        return False
    n_envs = shape[0] if batched else 1
    if array.shape != shape:
        return False
    slates = [
        row
        for i, row in enumerate(array.reshape(n_envs, slate_size).tolist())
        if ignored is None or not ignored[i]
    ]
    return all(0 <= item < N_ITEMS for row in slates for item in row) and all(
        len(set(row)) == len(row) for row in slates
    )


_single_envs: dict[int, SeqRecEnv] = {}


@pytest.mark.parametrize("slate_size", [1, 3])
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_random_actions_step_or_raise_action_error_in_the_single_env(slate_size, data):
    env = _single_envs.get(slate_size)
    if env is None:
        env = _single_envs[slate_size] = SeqRecEnv(slate_size=slate_size, max_steps=20)
        env.reset(seed=0)
    shape = env.action_space.shape
    action = data.draw(
        st.one_of(_near_valid(shape), _near_valid(shape), _arrays(max_dims=2), _python_actions())
    )
    valid = _valid(action, shape, slate_size, batched=False)
    event("valid" if valid else "refused")
    if valid:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    else:
        with pytest.raises(ActionError, match=r"^action: invalid action"):
            env.step(action)


_vector_envs: dict[int, tuple[SeqRecVectorEnv, np.ndarray]] = {}


@pytest.mark.parametrize("slate_size", [1, 3])
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_random_actions_step_or_raise_action_error_in_the_vector_env(slate_size, data):
    if slate_size not in _vector_envs:
        env = SeqRecVectorEnv(num_envs=3, slate_size=slate_size, max_steps=3)
        env.reset(seed=0)
        _vector_envs[slate_size] = (env, np.zeros(3, dtype=bool))
    env, resetting = _vector_envs[slate_size]
    batch = (3,) if slate_size == 1 else (3, slate_size)
    near = hnp.arrays(
        np.int64,
        st.sampled_from([batch, (3, 1), (2,), (4,), (3, 2), (1, 3)]),
        elements=st.integers(-1, N_ITEMS),
    )
    action = data.draw(
        st.one_of(_near_valid(batch), _near_valid(batch), near, _arrays(max_dims=3), _python_actions())
    )
    before = np.array(action, copy=True) if isinstance(action, np.ndarray) else None
    valid = _valid(action, batch, slate_size, batched=True, ignored=resetting)
    event("valid" if valid else "refused")
    if valid:
        _, _, terminated, truncated, _ = env.step(action)  # the resetting rows' items are replaced...
        resetting[:] = terminated | truncated
    else:
        with pytest.raises(ActionError, match=r"^actions: invalid action"):
            env.step(action)
    if before is not None:
        np.testing.assert_array_equal(action, before)  # ... in a copy, never in the caller's array


# ---------------------------------------------------------------------------------------------------
# A refused action changes nothing
# ---------------------------------------------------------------------------------------------------
def _assert_same_step(x, y):
    assert len(x) == len(y)
    for u, v in zip(x, y):
        if isinstance(u, dict):
            assert u.keys() == v.keys()
            for key in u:
                _assert_same_step([u[key]], [v[key]])
        else:
            np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("slate_size", [1, 3])
def test_a_refused_action_leaves_the_single_env_as_its_untouched_twin(slate_size):
    hostile, twin = SeqRecEnv(slate_size=slate_size), SeqRecEnv(slate_size=slate_size)
    _assert_same_step(hostile.reset(seed=5), twin.reset(seed=5))
    bad = [True, 1.0, -1, N_ITEMS, [1, 1, 2], [1, 2], None, "x"]
    rng = np.random.default_rng(0)
    for _ in range(30):
        action = rng.permutation(N_ITEMS)[:slate_size]
        action = int(action[0]) if slate_size == 1 else action
        for bad_action in bad:
            with pytest.raises(ActionError):
                hostile.step(bad_action)
        step = hostile.step(action)
        _assert_same_step(step, twin.step(action))
        if step[2] or step[3]:
            _assert_same_step(hostile.reset(), twin.reset())


def test_a_refused_batch_leaves_the_vector_env_as_its_untouched_twin():
    """Also across NEXT_STEP autoresets (max_steps=2), where the refused batch holds resetting rows."""
    hostile, twin = (
        SeqRecVectorEnv(num_envs=4, slate_size=2, max_steps=2),
        SeqRecVectorEnv(num_envs=4, slate_size=2, max_steps=2),
    )
    _assert_same_step(hostile.reset(seed=9), twin.reset(seed=9))
    rng = np.random.default_rng(1)
    done = np.zeros(4, dtype=bool)
    for _ in range(12):
        actions = np.stack([rng.permutation(N_ITEMS)[:2] for _ in range(4)])
        bad_batches = [actions[:3], actions.T, actions.astype(float), actions[:, :1]]
        live = np.flatnonzero(~done)  # rows that reset this step ignore their items
        if len(live):
            outside, duplicate = actions.copy(), actions.copy()
            outside[live[0], 0] = N_ITEMS
            duplicate[live[-1], 1] = duplicate[live[-1], 0]
            bad_batches += [outside, duplicate]
        for bad in bad_batches:
            with pytest.raises(ActionError):
                hostile.step(bad)
        step = hostile.step(actions)
        _assert_same_step(step, twin.step(actions))
        done = step[2] | step[3]
    assert len(live) < 4  # the check covered steps with resetting rows


def test_sub_envs_that_reset_ignore_the_items_of_their_action_but_not_its_shape_or_dtype():
    """NEXT_STEP autoreset: a sub-env that resets this step ignores its action (as Gymnasium's
    vector envs do), so its row's items are not checked; the batch's shape and dtype still are."""
    env = SeqRecVectorEnv(num_envs=2, max_steps=1)
    env.reset(seed=0)
    env.step(np.array([1, 2]))  # both sub-envs' episodes end: the next step resets them
    with pytest.raises(ActionError, match="dtype float64"):
        env.step(np.array([1.0, 2.0]))
    with pytest.raises(ActionError, match=r"shape \(3,\)"):
        env.step(np.array([1, 2, 3]))
    _, rewards, *_ = env.step(np.array([-1, N_ITEMS]))  # both rows ignored
    assert np.all(rewards == 0.0)
    with pytest.raises(ActionError, match="outside"):
        env.step(np.array([-1, 3]))  # no longer resetting: checked


def test_lts_env_after_refused_actions_matches_its_twin():
    hostile, twin = SeqRecLTSEnv(), SeqRecLTSEnv()
    _assert_same_step(hostile.reset(seed=2), twin.reset(seed=2))
    for action in range(30):
        for bad in (True, 1.5, 30, [action]):
            with pytest.raises(ActionError):
                hostile.step(bad)
        _assert_same_step(hostile.step(action), twin.step(action))


def test_check_env_still_passes_on_the_hardened_envs():
    check_env(SeqRecEnv(slate_size=3), skip_render_check=True)
    check_env(SeqRecLTSEnv(), skip_render_check=True)


def test_errors_stay_value_errors_for_callers_that_catch_those():
    env = gym.make("SeqRec-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError):
        env.step(-1)
    with pytest.raises(TypeError):
        gym.make("SeqRec-v0", history_len="20")
