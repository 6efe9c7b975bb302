"""TSCAC (agents/tscac.py): stage-two closed form, transitions from logs, both stages end to end, the contract."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from agents import load_policy
from agents import tscac as T

TINY = dict(d_model=8, n_layers=1, dropout=0.0, critic_steps=3, actor_steps=3, batch_size=32)


# ---------------------------------------------------------------------------------------------- stage two
def test_stage_two_weights_match_the_closed_form_by_hand():
    # One state, three actions; two auxiliary actors, lambdas (1, 3): Lambda = 4.
    pi_1 = np.array([0.5, 0.3, 0.2])
    pi_2 = np.array([0.2, 0.2, 0.6])
    advantage = np.array([1.0, 0.0, -1.0])
    pi_b = np.array([0.25, 0.25, 0.5])
    by_hand = [
        0.5**0.25 * 0.2**0.75 * math.exp(0.25) / 0.25,
        0.3**0.25 * 0.2**0.75 * math.exp(0.0) / 0.25,
        0.2**0.25 * 0.6**0.75 * math.exp(-0.25) / 0.5,
    ]
    by_hand = np.array(by_hand) / sum(by_hand)
    weights = T.stage_two_weights(
        torch.log(torch.tensor(np.stack([pi_1, pi_2], 1))),
        torch.tensor(advantage),
        torch.log(torch.tensor(pi_b)),
        (1.0, 3.0),
    )
    np.testing.assert_allclose(weights.numpy(), by_hand, rtol=1e-12)


def test_weighted_likelihood_over_behaviour_samples_recovers_pi_star():
    # Logged actions in exact proportion to pi_b: the total weight of each action is pi*(a), so the
    # minimiser of -sum_j w_j log pi(a_j) is pi* itself (TSCAC eq. 8).
    pi_aux = np.array([[0.1, 0.6, 0.3], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25]]).T  # [3 actions, 3 signals]
    advantage = np.array([0.5, -0.2, 0.1])
    pi_b = np.array([0.2, 0.3, 0.5])
    lambdas = (0.5, 1.0, 2.0)
    counts = (pi_b * 10).astype(int)  # 2, 3, 5 samples
    actions = np.repeat(np.arange(3), counts)
    weights = T.stage_two_weights(
        torch.log(torch.tensor(pi_aux[actions])),
        torch.tensor(advantage[actions]),
        torch.log(torch.tensor(pi_b[actions])),
        lambdas,
    ).numpy()
    total = sum(lambdas)
    pi_star = np.prod(pi_aux ** (np.array(lambdas) / total), axis=1) * np.exp(advantage / total)
    pi_star /= pi_star.sum()
    np.testing.assert_allclose(np.bincount(actions, weights), pi_star, rtol=1e-12)

    # The loss is convex in the logits and its gradient vanishes at log pi*: pi* is its minimiser.
    logits = torch.tensor(np.log(pi_star), requires_grad=True)
    loss = -(torch.tensor(weights) * torch.log_softmax(logits, 0)[torch.tensor(actions)]).sum()
    loss.backward()
    np.testing.assert_allclose(logits.grad.numpy(), 0.0, atol=1e-12)
    logits = torch.zeros(3, requires_grad=True)  # ... and not elsewhere
    (-(torch.tensor(weights) * torch.log_softmax(logits, 0)[torch.tensor(actions)]).sum()).backward()
    assert logits.grad.abs().max() > 1e-2


# ---------------------------------------------------------------------------------------------- data
def test_transitions_from_logs_build_left_padded_windows_per_user(world_logs):
    data = T.transitions_from_logs(world_logs, history_len=5)
    frame = world_logs.frame
    assert len(data) == len(frame)
    np.testing.assert_array_equal(data.action, frame["item_id"].to_numpy())
    np.testing.assert_array_equal(data.propensity, frame["propensity"].to_numpy())
    users = frame["user_id"].to_numpy()
    last = np.r_[users[1:] != users[:-1], True]
    np.testing.assert_array_equal(data.done, last.astype(np.float32))
    first = np.r_[True, users[1:] != users[:-1]]
    assert (
        data.item_ids[data.state[first]] == world_logs.n_items
    ).all()  # nothing before a user's first step
    s, s_next = data.item_ids[data.state], data.item_ids[data.next_state]
    np.testing.assert_array_equal(s_next[:, -1], data.action)  # s' ends with the action just taken
    np.testing.assert_array_equal(s_next[:, :-1], s[:, 1:])
    np.testing.assert_array_equal(data.feedback[data.next_state][:, -1], data.reward)
    np.testing.assert_array_equal(data.state[~first], data.next_state[np.flatnonzero(~first) - 1])


def test_transitions_reject_slates_and_missing_propensities(world_logs):
    from recsim_env.errors import DataError

    class Fake:
        name = "fake"
        n_items = world_logs.n_items
        frame = world_logs.frame.drop(columns=["propensity"])

    with pytest.raises(DataError, match="propensity"):
        T.transitions_from_logs(Fake(), 5)
    from recsim_env.world.logging import log_world

    slates = log_world("uniform", steps=200, seed=0, slate_size=2, progress=False)
    with pytest.raises(
        DataError, match="column 'position' is non-zero at row 2; TSCAC needs one-item slates"
    ):
        T.transitions_from_logs(slates, 5)


def test_thresholds_and_violations():
    rates = {"click": 0.5, "watch_time": 10.0, "like": 0.2, "follow": 0.1, "share": 0.05, "hate": 0.1}
    thresholds = T.constraint_thresholds(rates, 0.1)
    assert thresholds == pytest.approx(
        {"click": 0.45, "like": 0.18, "follow": 0.09, "share": 0.045, "hate": 0.11}
    )
    assert T.constraint_violations(rates, thresholds) == []
    worse = rates | {"click": 0.44, "hate": 0.12}
    assert T.constraint_violations(worse, thresholds) == ["click", "hate"]


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="variant"):
        T.TSCACConfig(variant="ppo")
    with pytest.raises(ValueError, match="lambdas"):
        T.TSCACConfig(lambdas=(1.0, 1.0))
    with pytest.raises(ValueError, match="lambdas"):
        T.TSCACConfig(lambdas=(1.0, 1.0, 0.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="actor_objective"):
        T.TSCACConfig(actor_objective="ppo")
    with pytest.raises(TypeError):
        T.TSCACConfig(**{"not_a_field": 1})


# ---------------------------------------------------------------------------------------------- networks
def test_candidate_softmax_over_the_whole_catalogue_equals_the_full_softmax():
    torch.manual_seed(0)
    actor = T.Actor(T.TSCACConfig(**TINY), n_items=7, n_heads=2)
    item_ids = torch.tensor([[7, 7, 1, 2], [3, 4, 5, 6]])
    feedback = torch.rand(2, 4, 6)
    action = torch.tensor([2, 6])
    full = actor.log_prob(item_ids, feedback, action)
    sampled = actor.log_prob(
        item_ids, feedback, action, candidates=torch.arange(7)
    )  # includes a duplicate of a
    torch.testing.assert_close(sampled, full)
    assert full.shape == (2, 2)


# ---------------------------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("variant", ["tscac", "bc", "rcpo", "scalarised"])
def test_both_stages_run_and_the_policy_meets_the_contract(variant, world_logs, observations, tmp_path):
    config = T.TSCACConfig(
        variant=variant, history_len=10, n_candidates=16 if variant == "tscac" else 0, **TINY
    )
    policy, stats = T.train(config, world_logs, progress=False)
    assert set(stats["thresholds"]) == set(T.AUX_SIGNALS)
    probs = policy.action_distribution(observations)  # the env's observations have L = 20 > 10
    assert probs.shape == (6, 500)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-9)
    actions = policy.act(observations)
    assert actions.shape == (6,) and ((0 <= actions) & (actions < 500)).all()
    single = {key: value[0] for key, value in observations.items()}
    assert isinstance(policy.act(single, deterministic=True), int)
    policy.save(tmp_path / "policy")
    loaded = load_policy(tmp_path / "policy")
    assert isinstance(loaded, T.TSCACPolicy) and loaded.config == config
    np.testing.assert_array_equal(loaded.action_distribution(observations), probs)
    again, _ = T.train(config, world_logs, progress=False)  # bit-for-bit reproducible on CPU
    np.testing.assert_array_equal(again.action_distribution(observations), probs)


def test_rcpo_multipliers_rise_when_constraints_are_violated(world_logs):
    # A tolerance of 0 puts every threshold at the behaviour rate; the untrained actor's estimated rates
    # fall short of some of them, so dual ascent must move their multipliers off zero.
    config = T.TSCACConfig(
        variant="rcpo", tolerance=0.0, rcpo_learning_rate=1.0, **TINY | {"actor_steps": 20}
    )
    _, stats = T.train(config, world_logs, progress=False)
    assert all(mu >= 0 for mu in stats["mu"].values())
    assert any(mu > 0 for mu in stats["mu"].values())


def test_tscac_learns_the_best_watch_time_item_of_a_bandit():
    # Uniform logging over 4 items with empty histories; item 2 has the longest watch time and the
    # same auxiliary signals as the others: stage two must move the policy onto it, BC must not.
    rng = np.random.default_rng(0)
    n, n_items, length = 4000, 4, 3
    action = rng.integers(0, n_items, n)
    reward = np.zeros((n, 6), np.float32)
    reward[:, 0] = rng.random(n) < 0.5  # click
    reward[:, 1] = np.where(action == 2, 60.0, 10.0) + rng.normal(0, 2, n)  # watch time
    data = T.Transitions(
        item_ids=np.full((1, length), n_items),
        feedback=np.zeros((1, length, 6), np.float32),
        state=np.zeros(n, np.int64),
        next_state=np.zeros(n, np.int64),
        action=action,
        reward=reward,
        done=np.ones(n, np.float32),
        propensity=np.full(n, 1 / n_items),
        n_items=n_items,
    )
    config = T.TSCACConfig(
        history_len=length,
        d_model=8,
        dropout=0.0,
        critic_steps=150,
        actor_steps=150,
        batch_size=64,
        learning_rate=1e-2,
        lambdas=(0.1,) * 5,
    )
    obs = {"item_ids": data.item_ids[0], "feedback": data.feedback[0]}
    stage_one = T.fit_critics_and_stage_one(config, data, progress=False)
    tscac, _ = T.train(config, data, stage_one=stage_one, progress=False)
    bc, _ = T.train(dataclasses.replace(config, variant="bc"), data, stage_one=stage_one, progress=False)
    # Closed form: A_1 = +1.25 for item 2 and -0.42 for the others (units of 30 s), Lambda = 0.5,
    # pi_i uniform: pi*(2) = e^2.5 / (e^2.5 + 3 e^-0.83) = 0.90.
    assert 0.8 < tscac.action_distribution(obs)[2] < 0.97
    assert bc.action_distribution(obs)[2] < 0.4


def test_online_training_and_world_rates():
    config = T.TSCACConfig(history_len=5, **TINY)
    policy, stats = T.train_online(
        config, rounds=2, steps_per_round=200, num_envs=8, progress=False, max_steps=10
    )
    assert len(stats["collected_rates"]) == 2
    rates = T.world_rates(policy, n_episodes=8, seed=0, num_envs=8, max_steps=10)
    assert set(rates) == set(T.SIGNALS)
    assert 0.0 <= rates["click"] <= 1.0 and rates["watch_time"] >= 0.0
    assert rates == T.world_rates(policy, n_episodes=8, seed=0, num_envs=8, max_steps=10)


@pytest.mark.gpu
def test_device_auto_trains_on_the_gpu(world_logs):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    policy, _ = T.train(T.TSCACConfig(device="auto", **TINY), world_logs, progress=False)
    assert next(policy.actor.parameters()).device.type == "cuda"


# ---------------------------------------------------------------------------------------------- benchmark
def _benchmark_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "tscac_world.py"
    spec = importlib.util.spec_from_file_location("tscac_world", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_summary_marks_violations_and_the_feasible_tscac():
    bench = _benchmark_module()
    behaviour = {"click": 0.5, "watch_time": 10.0, "like": 0.2, "follow": 0.1, "share": 0.05, "hate": 0.1}
    thresholds = T.constraint_thresholds(behaviour, 0.1)

    def rates(**changes):
        row = behaviour | changes
        return {"truth": row, "SNIPS": row, "DR": row}

    runs = [
        {
            "behaviour": behaviour,
            "thresholds": thresholds,
            "policies": {
                "bc": rates(watch_time=10.0 + seed),
                "scalarised": rates(hate=0.2),
                "tscac(lambda=0.1)": rates(watch_time=30.0, click=0.3),
                "tscac(lambda=0.5)": rates(watch_time=14.0),
            },
            "rcpo_mu": None,
            "train_s": 1.0,
        }
        for seed in (0, 1)
    ]
    summary = bench.summarise(runs, [0.1, 0.5])
    assert summary["policies"]["scalarised"]["violates"] == ["hate"]
    assert summary["policies"]["tscac(lambda=0.1)"]["violates"] == ["click"]
    assert summary["policies"]["bc"]["truth"]["watch_time"] == pytest.approx({"mean": 10.5, "std": 0.5**0.5})
    assert summary["best_feasible_tscac"] == "tscac(lambda=0.5)"
    assert summary["tscac_selected_by_dr"] == "tscac(lambda=0.5)"
    assert summary["tscac_beats_bc_within_constraints"]
    table = bench.markdown(summary)
    assert "| scalarised |" in table and "hate |" in table


@pytest.mark.slow
def test_benchmark_runs_end_to_end_and_prints_one_json_line():
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    args = (
        "--seeds 1 --steps 2000 --ope-steps 1000 --critic-steps 3 --actor-steps 3 --episodes 4 --no-progress"
    )
    done = subprocess.run(
        [sys.executable, "benchmarks/tscac_world.py", *args.split()],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert {"bc", "rcpo", "scalarised", "logger"} <= set(result["policies"])
    assert len([p for p in result["policies"] if p.startswith("tscac")]) >= 3
