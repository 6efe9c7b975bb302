"""The default `seqrec train` under a time budget against filter-farsighted, with its learning curve.

Trains `TrainConfig` (the defaults of `seqrec train`, changed by `--config`) until `--budget` seconds
or `--steps` steps, evaluating every `--eval-interval` steps on 20 episodes (the run's own
`eval/mean_reward`, most probable item) so the curve reads return against steps and against
seconds. Then evaluates the saved policy on its most probable item over `--episodes` episodes and
rolls out filter-farsighted on the same seeds, and reports the share. Prints one JSON line, with the
machine's load average at the start and the end (wall-time figures depend on it).

    python benchmarks/agent_budget.py [--quick] [--budget 600] [--steps N] [--episodes 1000]
        [--seed 0] [--config '{"algo_config": {"n_epochs": 10}}']
    python benchmarks/agent_budget.py --costs [--quick]   # env steps/s and encoder cost per minibatch
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path


def learning_curve(run: Path) -> list[dict[str, float]]:
    """Steps, seconds and mean return of each evaluation in the run's SB3 `progress.csv` files.

    SB3 logs the elapsed time with the rollout rows only: an evaluation's seconds are those of the
    first rollout row at or after its step (at most one PPO iteration late).
    """
    evaluations, clock = [], []
    for progress in sorted((run / "logs").glob("run-*/progress.csv")):
        with progress.open(newline="") as handle:
            for row in csv.DictReader(handle):
                steps = int(float(row["time/total_timesteps"]))
                if row.get("eval/mean_reward"):
                    evaluations.append((steps, float(row["eval/mean_reward"])))
                if row.get("time/time_elapsed"):
                    clock.append((steps, float(row["time/time_elapsed"])))
    curve = []
    for steps, mean_return in evaluations:
        seconds = next((t for s, t in clock if s >= steps), None)
        curve.append({"steps": steps, "seconds": seconds, "return": round(mean_return, 2)})
    return curve


def costs(seconds: float) -> dict:
    """Where PPO's time goes: environment steps per second through SB3's `DummyVecEnv` loop and through
    `SeqRecSB3VecEnv` (random actions, after a warm-up), and one PPO minibatch's encoder forward and
    backward pass (256 windows of 20 events, train mode) for several encoder sizes, on one torch thread."""
    import gymnasium as gym
    import numpy as np
    import torch
    from stable_baselines3.common.env_util import make_vec_env

    import recsim_env  # noqa: F401  (registers the environments)
    from agents.sb3_vec_env import SeqRecSB3VecEnv
    from recsim_env import encoders

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    env_rates = {}
    for n_envs in (8, 64):
        for name, env in (
            ("dummy_vec_env", make_vec_env(lambda: gym.make("SeqRec-v0"), n_envs=n_envs, seed=0)),
            ("seqrec_sb3_vec_env", SeqRecSB3VecEnv(n_envs, {})),
        ):
            env.reset()
            for _ in range(50):
                env.step(rng.integers(0, 500, n_envs))
            steps, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                env.step(rng.integers(0, 500, n_envs))
                steps += n_envs
            env_rates[f"{name}_{n_envs}"] = round(steps / (time.perf_counter() - started))
    item_ids, feedback = torch.randint(0, 500, (256, 20)), torch.rand(256, 20, 6)
    encoder_ms = {}
    for name, fields in (
        ("sasrec", {}),
        ("sasrec", {"dropout": 0.0}),
        ("sasrec", {"n_layers": 1}),
        ("sasrec", {"n_layers": 1, "d_model": 32}),
        ("gru4rec", {}),
        ("gru4rec", {"d_model": 32}),
    ):
        torch.manual_seed(0)
        encoder = encoders.build(name, {"n_items": 500, "max_len": 20, "feedback_dim": 6, **fields}).train()
        encoder.user_state(item_ids, feedback=feedback).sum().backward()
        repeats, started = 0, time.perf_counter()
        while repeats < 3 or time.perf_counter() - started < seconds / 3:
            encoder.user_state(item_ids, feedback=feedback).sum().backward()
            repeats += 1
        encoder_ms[f"{name} {json.dumps(fields)}"] = round(
            (time.perf_counter() - started) / repeats * 1000, 1
        )
    return {
        "env_steps_per_s": env_rates,
        "encoder_fwd_bwd_ms_per_256": encoder_ms,
        "load": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 s, 100 episodes")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds of training")
    parser.add_argument("--steps", type=int, default=None, help="stop at this many steps instead")
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--eval-interval", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default="{}", help="TrainConfig fields as a JSON object")
    parser.add_argument("--costs", action="store_true", help="measure env and learner costs only")
    args = parser.parse_args()
    if args.costs:
        print(json.dumps({"benchmark": "agent_budget_costs", **costs(3.0 if args.quick else 10.0)}))
        return
    budget, episodes = (30.0, 100) if args.quick else (args.budget, args.episodes)

    import torch

    from agents import load_policy
    from agents.training import TrainConfig, train
    from agents.training.config import UNLIMITED_STEPS
    from recsim_env.policies.filter import reference_policy
    from recsim_env.rollout import rollout
    from recsim_env.world import UserWorld

    overrides = json.loads(args.config)
    fields = {"seed": args.seed, "eval_interval": args.eval_interval, **overrides}
    if args.steps is not None:
        fields.update(stop_timesteps=args.steps, time_budget_s=None)
    else:
        fields.update(stop_timesteps=UNLIMITED_STEPS, time_budget_s=budget)
    config = TrainConfig(**fields)
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        started = time.perf_counter()
        result = train(config, run, progress=False)
        train_s = time.perf_counter() - started
        load_end = os.getloadavg()
        curve = learning_curve(run)
        torch.set_num_threads(1)
        policy = load_policy(run)
        agent = rollout(policy, n_episodes=episodes, seed=args.seed, deterministic=True)
        sampled = rollout(policy, n_episodes=episodes, seed=args.seed, deterministic=False)
    env_config = dict(config.env_config)
    ceiling = rollout(
        reference_policy("filter-farsighted", UserWorld()), n_episodes=episodes, seed=args.seed, **env_config
    )
    print(json.dumps({
        "benchmark": "agent_budget", "config": overrides, "budget_s": None if args.steps else budget,
        "steps": result.timesteps, "train_s": round(train_s, 1),
        "steps_per_s": round(result.timesteps / max(result.elapsed_s, 1e-9), 1),
        "episodes": episodes, "seed": args.seed,
        "return": round(agent.mean_return, 3), "ci95": [round(x, 3) for x in agent.return_ci95],
        "click_rate": round(agent.click_rate, 4), "session_length": round(agent.session_length, 2),
        "sampled_return": round(sampled.mean_return, 3), "sampled_ci95": [round(x, 3) for x in sampled.return_ci95],
        "filter_farsighted": round(ceiling.mean_return, 3),
        "share": round(agent.mean_return / ceiling.mean_return, 4),
        "curve": curve, "load_start": [round(x, 2) for x in load_start],
        "load_end": [round(x, 2) for x in load_end],
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.node(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
