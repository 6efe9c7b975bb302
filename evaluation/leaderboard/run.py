"""Run a leaderboard: train each agent, roll every policy out on the same seeds and users, keep each result.

For each setting and seed `s` (`b = SEED_STRIDE * s`):
1. log `log_steps` user-steps of the uniform logger in the world (seed `b`); the baselines and the
   offline agents are fitted on these logs;
2. train each agent with seed `b` (online agents in the setting's environment for `time_budget_s`);
3. roll each policy out for `episodes` episodes of the setting's environment seeded `EVAL_SEED + b`,
   so every policy meets the same users with the same randomness, and other seeds other users.

Every result is written to `out/results/<setting>/<row>/seed-<s>.json` as soon as it exists, and a run
that stops (or is stopped) continues where it was when started again with the same `out`: finished
results are read back, saved policies are evaluated without training them again.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.training.config import UNLIMITED_STEPS
from evaluation.leaderboard.config import (
    BASELINES,
    ONLINE_AGENTS,
    WORLD_REFERENCES,
    LeaderboardConfig,
)
from recsim_env.io import write_atomic

SEED_STRIDE = 1_000
"""Seed `s` of a leaderboard seeds its training and logs with `SEED_STRIDE * s` and its evaluation with
`EVAL_SEED + SEED_STRIDE * s`: a vector env seeds sub-env i with seed + i, so seeds one apart would replay
all but one of each other's users."""
EVAL_SEED = 100_000_000
"""Apart from every training seed."""
STOCHASTIC_AGENTS = ("ppo", "a2c", "dt4ier", "sim2rec")
"""Agents whose policy is a distribution: their row acts on its most probable item (as `seqrec evaluate RUN`
does), and with `sampled_rows` a second row samples from it."""
SAMPLED_SUFFIX = " (sampled)"


@dataclass(frozen=True)
class Result:
    """One policy, setting and seed: what `recsim_env.rollout.RolloutStats` measured, and training time."""

    setting: str
    row: str
    kind: str
    """"baseline", "world reference" or "agent"."""
    seed: int
    stats: dict[str, Any]
    train_s: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def row_names(config: LeaderboardConfig) -> list[str]:
    """Every row of the leaderboard, in order: references, then agents (and their argmax rows)."""
    rows = list(config.references)
    for agent in config.agents:
        rows.append(agent)
        if config.sampled_rows and agent in STOCHASTIC_AGENTS:
            rows.append(agent + SAMPLED_SUFFIX)
    return rows


def run_leaderboard(
    config: LeaderboardConfig,
    out: str | Path,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[Result]:
    """Every result of `config` (computed, or read back from `out`), in setting, seed, row order."""
    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_same_protocol(config, out)
    rows = row_names(config)
    results: list[Result] = []
    total = len(config.settings) * config.seeds * len(rows)
    with tqdm(total=total, desc="leaderboard", unit="result", disable=not progress) as bar:
        for setting in config.settings:
            for seed in range(config.seeds):
                context = _SeedContext(config, setting, seed, out, progress=progress, log=log)
                for row in rows:
                    bar.set_postfix_str(f"{setting} seed {seed}: {row}")
                    results.append(context.result(row))
                    bar.update(1)
    return results


class _SeedContext:
    """The logs, world and trained policies of one setting and seed (built when first needed)."""

    def __init__(
        self, config: LeaderboardConfig, setting: str, seed: int, out: Path, *, progress: bool, log
    ) -> None:
        self.config = config
        self.setting = setting
        self.seed = seed
        self.base_seed = SEED_STRIDE * seed
        self.out = out
        self.progress = progress
        self.log = log
        self.env_kwargs = config.env_kwargs(setting)
        self._logs = None
        self._policies: dict[str, tuple[Any, float]] = {}

    # ------------------------------------------------------------------ results
    def result_path(self, row: str) -> Path:
        return self.out / "results" / self.setting / _slug(row) / f"seed-{self.seed}.json"

    def result(self, row: str) -> Result:
        path = self.result_path(row)
        if path.exists():
            return Result(**json.loads(path.read_text()))
        if row in BASELINES:
            kind, (stats, train_s) = "baseline", self._evaluate_baseline(row)
        elif row in WORLD_REFERENCES:
            kind, (stats, train_s) = "world reference", self._evaluate_reference(row)
        else:
            agent = row.removesuffix(SAMPLED_SUFFIX)
            policy, train_s = self.policy(agent)
            kind, stats = "agent", self._rollout(policy, deterministic=row == agent)
        stats = json.loads(json.dumps(stats))  # as read back from the file (tuples become lists)
        result = Result(self.setting, row, kind, self.seed, stats, train_s)
        write_atomic(path, json.dumps(result.to_dict(), indent=1).encode())
        return result

    def _eval_args(self) -> dict[str, Any]:
        return {"n_episodes": self.config.episodes, "seed": EVAL_SEED + self.base_seed, **self.env_kwargs}

    def _rollout(self, policy, *, deterministic: bool = False) -> dict[str, Any]:
        from recsim_env.rollout import rollout

        return rollout(policy, deterministic=deterministic, **self._eval_args()).as_dict()

    def _evaluate_baseline(self, name: str) -> tuple[dict[str, Any], float]:
        from agents.baselines import fit_baseline

        logs = self.logs()
        started = time.perf_counter()
        policy = fit_baseline(name, logs, seed=self.base_seed)
        return self._rollout(policy), time.perf_counter() - started

    def _evaluate_reference(self, name: str) -> tuple[dict[str, Any], float]:
        from recsim_env.policies import reference_policy
        from recsim_env.world import UserWorld

        return self._rollout(reference_policy(name, UserWorld())), 0.0

    # ------------------------------------------------------------------ training
    def logs(self):
        """The seed's uniform world logs (sessions per user as the setting's episodes)."""
        if self._logs is None:
            from recsim_env.world.logging import log_world

            sessions = self.env_kwargs.get("sessions_per_episode", 1)
            self._logs = log_world(
                "uniform",
                steps=self.config.log_steps,
                seed=self.base_seed,
                sessions_per_user=sessions,
                progress=False,
            )
        return self._logs

    def policy(self, agent: str) -> tuple[Any, float]:
        """The agent trained with this seed (trained now, or loaded from `out/runs`), and its training time."""
        if agent in self._policies:
            return self._policies[agent]
        from agents import load_policy

        run = self.out / "runs" / self.setting / agent / f"seed-{self.seed}"
        summary_path = run / "train.json"
        if not summary_path.exists():
            if run.exists():  # a run stopped before it finished: start it again
                shutil.rmtree(run)
            self.log(f"training {agent} ({self.setting}, seed {self.seed})")
            started = time.perf_counter()
            info = self._train(agent, run)
            summary = {"train_s": time.perf_counter() - started, "info": info}
            write_atomic(summary_path, json.dumps(summary, default=str).encode())
        summary = json.loads(summary_path.read_text())
        loaded = (
            load_policy(run / "policy" if (run / "policy").is_dir() else run),
            float(summary["train_s"]),
        )
        self._policies[agent] = loaded
        return loaded

    def _train(self, agent: str, run: Path) -> dict[str, Any]:
        overrides = dict(self.config.agent_configs.get(agent, {}))
        if agent in ONLINE_AGENTS:
            from agents.training import TrainConfig, train

            fields = {
                "algo": agent,
                "env_config": self.env_kwargs,
                "stop_timesteps": UNLIMITED_STEPS,
                "time_budget_s": self.config.time_budget_s,
                "seed": self.base_seed,
                "device": self.config.device,
                **overrides,
            }
            result = train(TrainConfig(**fields), run, progress=self.progress)
            return {"timesteps": result.timesteps, "elapsed_s": result.elapsed_s}
        from agents.registry import AGENTS

        spec = AGENTS[agent]
        names = {f.name for f in dataclasses.fields(spec.config_class)}
        fields = {
            k: v for k, v in {"seed": self.base_seed, "device": self.config.device}.items() if k in names
        }
        if "time_budget_s" in names:  # an offline agent with a budget gets the online agents' budget
            fields["time_budget_s"] = self.config.time_budget_s
        if "env_kwargs" in names and self.env_kwargs:
            fields["env_kwargs"] = self.env_kwargs
        fields.update(overrides)
        policy, info = spec.fit_function(
            spec.config_class(**fields), self.logs() if spec.needs_data else None, self.progress
        )
        policy.save(run / "policy")
        return info


PROTOCOL_FIELDS = (
    "episodes",
    "time_budget_s",
    "log_steps",
    "retention_sessions",
    "retention_weight",
    "agent_configs",
    "device",
)
"""The fields every kept result depends on: a directory's results are reused only under the same values
(seeds, settings, references and agents may grow between runs)."""
PROTOCOL_FILE = "protocol.json"
PROTOCOL_VERSION = 2
"""Raised when how results are made changes (2: seeds `SEED_STRIDE` apart)."""


def _check_same_protocol(config: LeaderboardConfig, out: Path) -> None:
    from recsim_env.errors import ArgumentError

    protocol = json.loads(json.dumps({name: config.to_dict()[name] for name in PROTOCOL_FIELDS}))
    protocol["protocol_version"] = PROTOCOL_VERSION
    path = out / PROTOCOL_FILE
    if path.exists():
        kept = json.loads(path.read_text())
        differ = [name for name in (*PROTOCOL_FIELDS, "protocol_version") if kept.get(name) != protocol[name]]
        if differ:
            raise ArgumentError(
                f"{out}: holds results made with other {', '.join(differ)} "
                f"({', '.join(f'{n}={kept.get(n)!r}' for n in differ)}); give another --out"
            )
    else:
        write_atomic(path, json.dumps(protocol, indent=1).encode())


def _slug(row: str) -> str:
    return row.replace(SAMPLED_SUFFIX, "-sampled").replace(" ", "-")
