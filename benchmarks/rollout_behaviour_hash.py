"""Behaviour fingerprint of every rollout loop's caller: SHA-256 prefixes of the seeded outputs of
`rollout_episodes` / `rollout` (uniform policy with one item and with slates, the myopic oracle, which
reads the hidden state), the world's logs (`log_world` with its `on_step` stream, uniform and softmax
slates), a tiny simulator's free-running sessions and world metrics (with and without an interest
filter), `simulated_value`, TSCAC (`train_online`, `collect_transitions`, `world_rates`) and Sim2Rec's
`evaluate`.

Only public entry points are called, so it runs unchanged at two commits: run it as
`PYTHONPATH=TREE python benchmarks/rollout_behaviour_hash.py` at both and compare the JSON; a refactor
of the rollout loop that keeps behaviour gives the same hashes on CPU. Prints one JSON line.

    python benchmarks/rollout_behaviour_hash.py [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time

import numpy as np
import torch
from tqdm.auto import tqdm


def digest(*parts) -> str:
    """SHA-256 prefix of arrays, lists and dicts of them (dtype and shape included)."""
    d = hashlib.sha256()
    for part in parts:
        if isinstance(part, dict):
            for key in sorted(part):
                d.update(key.encode())
                d.update(digest(part[key]).encode())
        elif isinstance(part, (list, tuple)):
            for x in part:
                d.update(digest(x).encode())
        else:
            a = np.asarray(part)
            d.update(str(a.dtype).encode() + str(a.shape).encode())
            d.update(np.ascontiguousarray(a).tobytes())
    return d.hexdigest()[:16]


def records_digest(r) -> str:
    return digest(
        r.returns, r.steps, r.clicks, r.sessions, r.gap_days, r.session_lengths, r.return_gaps,
        r.first_items, r.first_consumed,
    )  # fmt: skip


def rollouts() -> dict[str, str]:
    from recsim_env.policies import MyopicOracle, UniformPolicy
    from recsim_env.rollout import rollout, rollout_episodes
    from recsim_env.world import UserWorld

    out = {}
    for k in (1, 3):
        policy = UniformPolicy(500, k)
        records = rollout_episodes(
            policy, n_episodes=20, seed=1, num_envs=6, sessions_per_episode=2, slate_size=k
        )
        out[f"rollout_episodes uniform K={k}"] = records_digest(records)
    oracle = MyopicOracle(UserWorld())
    records = rollout_episodes(oracle, n_episodes=9, seed=2, num_envs=4, sessions_per_episode=2)
    out["rollout_episodes myopic-oracle"] = records_digest(records)
    calls: list[int] = []
    s = rollout(UniformPolicy(500), n_episodes=7, seed=3, num_envs=3, on_episode=calls.append)
    out["rollout uniform"] = digest(
        np.array([s.mean_return, s.click_rate, s.session_length, s.return_gap_days]), calls
    )
    return out


def world_logs() -> dict[str, str]:
    from recsim_env.world.logging import log_world

    out = {}
    for kind, k in (("uniform", 1), ("softmax", 3)):
        seen: list[str] = []

        def record(step, seen=seen):
            seen.append(
                digest(step.observation, step.started, step.episode, step.live, step.rewards,
                       step.terminated, step.truncated, step.rows)
            )  # fmt: skip

        logs = log_world(
            kind,
            steps=1500,
            seed=4,
            num_envs=32,
            slate_size=k,
            progress=False,
            on_step=record,
            sessions_per_user=2,
        )
        frame, users = logs.frame, logs.users
        columns = [frame[c].to_numpy() for c in frame.columns] + [users[c].to_numpy() for c in users.columns]
        out[f"log_world {kind} K={k}"] = digest(*columns, seen)
    return out


def simulator_loops() -> dict[str, str]:
    from evaluation.simulator_check import StepReward, simulated_value
    from recsim_env.policies import UniformPolicy
    from recsim_env.world.logging import log_world
    from simulators import SimulatorConfig, fit
    from simulators.report import world_metrics

    try:
        from simulators.report_sessions import simulate_sessions
    except ImportError:  # before the fidelity report's session section had its own module
        from simulators.report import simulate_sessions

    tiny = {"d_model": 16, "history_len": 8, "epochs": 2, "batch_size": 128, "dropout": 0.0, "seed": 0}
    logs = log_world("uniform", steps=3000, seed=0, progress=False, num_envs=64)
    simulator = fit(logs, SimulatorConfig(**tiny)).simulator
    weights = np.bincount(simulator.start_pool.items, minlength=simulator.n_items).astype(float) + 1e-3
    out = {
        "simulate_sessions": digest(*simulate_sessions(simulator, weights, episodes=40, seed=1, max_steps=20))
    }
    out["world_metrics"] = digest(world_metrics(simulator, steps=256 * 6 + 17, seed=3)["_samples"])
    filtered = fit(
        logs, SimulatorConfig(**{**tiny, "epochs": 1}, interest_filter=True, filter_dim=4)
    ).simulator
    out["world_metrics filter"] = digest(world_metrics(filtered, steps=256 * 8, seed=3)["_samples"])
    v = simulated_value(
        simulator, UniformPolicy(simulator.n_items), StepReward(), episodes=20, max_steps=8, num_envs=6, seed=2,
        alpha=0.1, n_bootstrap=50,
    )  # fmt: skip
    out["simulated_value uniform"] = digest(
        np.array([v["value"], v["lower"], v["upper"], v["first_step"], v["episodes"], v["steps"]])
    )
    return out


def agent_loops() -> dict[str, str]:
    from agents import tscac as T
    from agents.sim2rec import Sim2RecConfig, evaluate, train

    config = T.TSCACConfig(
        history_len=5, d_model=8, n_layers=1, dropout=0.0, critic_steps=3, actor_steps=3, batch_size=32
    )
    policy, stats = T.train_online(
        config, rounds=2, steps_per_round=200, num_envs=8, progress=False, max_steps=10
    )
    out = {"tscac train_online": digest(np.array([v for r in stats["collected_rates"] for v in r.values()]))}
    t = T.collect_transitions(policy, steps=300, seed=1, num_envs=8, history_len=5, max_steps=10)
    out["tscac collect_transitions"] = digest(
        t.item_ids, t.feedback, t.state, t.next_state, t.action, t.reward, t.done, t.propensity
    )
    rates = T.world_rates(policy, n_episodes=10, seed=0, num_envs=4, max_steps=10)
    out["tscac world_rates"] = digest(np.array(list(rates.values())))
    rates = T.world_rates(policy, n_episodes=5, seed=1, num_envs=8, max_steps=10, deterministic=True)
    out["tscac world_rates deterministic"] = digest(np.array(list(rates.values())))
    sim2rec = train(
        Sim2RecConfig(
            variant="sim2rec", total_timesteps=160, seed=0, num_envs=4, num_minibatches=2, window=5,
            hidden_dim=16, context_dim=8, env_kwargs={"time_budget": 20},
        ),
        progress=False,
    )  # fmt: skip
    out["sim2rec evaluate"] = digest(evaluate(sim2rec, choc_mean=14.0, episodes=3))
    out["sim2rec evaluate deterministic"] = digest(
        evaluate(sim2rec, choc_mean=12.0, episodes=4, seed=3, deterministic=True)
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="accepted for uniformity: the run is always small"
    )
    parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    hashes: dict[str, str] = {}
    for part in tqdm((rollouts, world_logs, simulator_loops, agent_loops), desc="rollout loops", unit="part"):
        hashes.update(part())
    record = {
        "benchmark": "rollout_behaviour_hash",
        "sha256": hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:16],
        "seconds": round(time.perf_counter() - started, 1),
        "hashes": hashes,
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
