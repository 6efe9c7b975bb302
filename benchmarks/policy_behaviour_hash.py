"""Behaviour fingerprint of every policy kind: seeded rollouts of the reference policies, the oracles,
the filters, small trained policies (an encoder policy, DT4IER, TSCAC, Sim2Rec ORACLE and Sim2Rec), the
simulator check's panel and the policy-value panel, each summarised exactly (full-precision floats)
and hashed together.

Only interfaces that a refactor of the policy contract keeps are used (`seqrec evaluate`,
`simulator_check`, `policy_values`, `evaluate_seqrec`), so it runs unchanged at two commits: run it as
`PYTHONPATH=TREE python benchmarks/policy_behaviour_hash.py [--quick]` at both and compare the JSON;
a refactor that keeps behaviour gives the same figures and the same `sha256` on CPU. Prints one JSON line.

    python benchmarks/policy_behaviour_hash.py [--quick] [--episodes 300] [--seed 11]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
from tqdm.auto import tqdm

CLI_ROWS = (
    ("--policy", "uniform"),
    ("--policy", "popularity"),
    ("--policy", "greedy"),
    ("--policy", "popularity", "--deterministic"),
    ("--policy", "popularity", "--env-config", '{"slate_size": 3}'),
    ("--policy", "greedy", "--env-config", '{"slate_size": 3}'),
    ("--policy", "filter-myopic"),
    ("--policy", "filter-farsighted"),
    ("--policy", "myopic-oracle"),
    ("--policy", "farsighted-oracle"),
    ("--policy", "farsighted-oracle", "--env-config", '{"slate_size": 3}'),
    ("ART/encoder", "--sample"),
    ("ART/encoder",),
    ("ART/dt4ier", "--sample"),
    ("ART/tscac", "--sample"),
)
"""`seqrec evaluate` rows; `ART/...` are the small trained policies saved by `save_trained`."""
LOG_STEPS = 20_000
"""Uniform world steps the log-based baselines are fitted on."""


def save_trained(root: str) -> None:
    """Save an untrained-but-seeded SASRec encoder policy (temperature 0.5), a 5-step DT4IER and a
    randomly initialised TSCAC actor into `root`."""
    from agents import tscac
    from agents.dt4ier import DT4IERConfig, trajectories_from_logs
    from agents.dt4ier import train as train_dt4ier
    from agents.encoder_policy import EncoderPolicy
    from recsim_env import encoders
    from recsim_env.encoders.checkpoint import Checkpoint
    from recsim_env.world.logging import log_world

    torch.manual_seed(0)
    encoder = encoders.build("sasrec", {"n_items": 500, "max_len": 20, "d_model": 16, "n_layers": 1})
    EncoderPolicy(Checkpoint(encoder.eval(), list(range(500))), temperature=0.5).save(f"{root}/encoder")
    logs = log_world("uniform", steps=3000, seed=0, progress=False)
    config = DT4IERConfig(steps=5, d_model=16, batch_size=16, seed=0)
    policy, _ = train_dt4ier(config, trajectories_from_logs(logs, config), progress=False)
    policy.save(f"{root}/dt4ier")
    torch.manual_seed(0)
    tiny = tscac.TSCACConfig(d_model=8, n_layers=1, dropout=0.0, critic_steps=3, actor_steps=3, batch_size=32)
    tscac.TSCACPolicy(tscac.Actor(tiny, n_items=500), tiny, 500).save(f"{root}/tscac")


def evaluate_cli(row: tuple[str, ...], root: str, episodes: int, seed: int) -> dict:
    """`seqrec evaluate ROW --episodes --seed --json` in a fresh process (one torch thread)."""
    args = [arg.replace("ART/", f"{root}/") for arg in row]
    if args[0] == "--policy" and args[1] in ("uniform", "popularity", "greedy"):
        args += ["--log-steps", str(LOG_STEPS)]
    command = [sys.executable, "-m", "recsim_env.cli", "evaluate", *args]
    command += ["--episodes", str(episodes), "--seed", str(seed), "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def simulator_panels(episodes: int) -> dict:
    """The simulator check's panel and the world-reference panel's policy values on a 2-epoch simulator."""
    from evaluation.simulator_check import SimulatorCheckConfig, StepReward, simulator_check
    from recsim_env.policies import LoggedItemStats
    from recsim_env.world.logging import log_world
    from simulators import SimulatorConfig, fit
    from simulators.policy_values import policy_values, world_panel

    logs = log_world("uniform", steps=3000, seed=0, progress=False, num_envs=64)
    config = SimulatorConfig(d_model=16, history_len=8, epochs=2, batch_size=128, dropout=0.0, seed=0)
    simulator = fit(logs, config).simulator
    check_config = SimulatorCheckConfig(episodes=episodes, max_steps=8, num_envs=16, n_bootstrap=100, seed=2)
    check = simulator_check(simulator, reward=StepReward(), config=check_config)
    values = policy_values(
        simulator,
        world_panel(LoggedItemStats.from_logs(logs)),
        episodes=episodes,
        seed=1,
        num_envs=16,
        env_kwargs={"max_steps": 10},
    )
    return {
        "simulator_check": {name: entry["simulated"] for name, entry in check["policies"].items()},
        "policy_values": {name: entry["world"] for name, entry in values["policies"].items()},
    }


def sim2rec_rollouts(episodes: int) -> dict:
    """Two-iteration Sim2Rec ORACLE and Sim2Rec policies rolled out by `evaluate_seqrec` (world, sampled
    and deterministic; and their simulator set)."""
    from agents.sim2rec import Sim2RecConfig, evaluate_seqrec, simulator_set, train
    from recsim_env.world.logging import log_world
    from simulators import SimulatorConfig, fit, save

    logs = log_world("uniform", steps=3000, seed=0, progress=False)
    sim_config = SimulatorConfig(
        d_model=16, history_len=8, epochs=1, batch_size=128, dropout=0.0, ensemble_size=2
    )
    path = str(save(fit(logs, sim_config).simulator, tempfile.mkdtemp() + "/sim"))
    env = {"history_len": 8, "max_steps": 10}
    out = {}
    for variant in ("oracle", "sim2rec"):
        config = Sim2RecConfig(
            variant=variant,
            simulator=path,
            total_timesteps=128,
            seed=0,
            env="seqrec",
            rollout_steps=16,
            d_model=16,
            env_kwargs=env,
            num_envs=4,
            num_minibatches=2,
            window=5,
            hidden_dim=16,
            context_dim=8,
        )
        policy = train(config, progress=False)
        for deterministic in (False, True):
            stats = evaluate_seqrec(policy, n_episodes=episodes, seed=5, deterministic=deterministic, **env)
            out[f"{variant} world deterministic={deterministic}"] = stats.as_dict()
        stats = evaluate_seqrec(policy, n_episodes=episodes, seed=5, user_model=simulator_set(config), **env)
        out[f"{variant} set"] = stats.as_dict()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100 episodes per CLI row, 16 per panel")
    parser.add_argument("--episodes", type=int, default=None, help="episodes per CLI row (default 300)")
    parser.add_argument("--seed", type=int, default=11, help="seed of the CLI rows")
    args = parser.parse_args()
    torch.set_num_threads(1)
    episodes = args.episodes or (100 if args.quick else 300)
    panel_episodes = 16 if args.quick else 32
    started = time.perf_counter()
    figures: dict = {}
    with tempfile.TemporaryDirectory() as root:
        save_trained(root)
        for row in tqdm(CLI_ROWS, desc="seqrec evaluate", unit="row"):
            figures[f"seqrec evaluate {' '.join(row)}"] = evaluate_cli(row, root, episodes, args.seed)
    figures.update(simulator_panels(panel_episodes))
    figures["sim2rec evaluate_seqrec"] = sim2rec_rollouts(panel_episodes)
    text = json.dumps(figures, sort_keys=True, default=str)
    record = {
        "benchmark": "policy_behaviour_hash",
        "episodes": episodes,
        "panel_episodes": panel_episodes,
        "seed": args.seed,
        "sha256": hashlib.sha256(text.encode()).hexdigest()[:16],
        "seconds": round(time.perf_counter() - started, 1),
        "figures": figures,
    }
    print(json.dumps(record, default=str))


if __name__ == "__main__":
    main()
