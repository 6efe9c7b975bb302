"""`seqrec train` and `seqrec evaluate` (discovered through the `seqrec.commands` entry points).

Light at import: torch, SB3 and Ray load inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from agents.baselines import BASELINES
from agents.training.config import UNLIMITED_STEPS, TrainConfig
from recsim_env.config_cli import config_options, given_options
from recsim_env.policies import REFERENCE_POLICIES

BASELINE_NAMES = BASELINES
"""Baselines of `seqrec evaluate --policy`, fitted on logs (`agents.baselines`)."""
LEARNED_USER_KEYS = ("user_model", "dataset", "simulator")
"""`SeqRec-v0` arguments that replace the world with other users."""
REFERENCE_NAMES = tuple(REFERENCE_POLICIES)
"""World references of `seqrec evaluate --policy` (`recsim_env.policies.REFERENCE_POLICIES`): they know the
world's equations; the filters see only the observation, the oracles read the hidden state."""


def set_torch_threads(threads: int) -> None:
    """Use `threads` torch CPU threads (0: leave torch's default), if torch is installed."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def _json_option(text: str | None, option: str) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise typer.BadParameter(f"not valid JSON ({error})", param_hint=option) from None
    if not isinstance(value, dict):
        raise typer.BadParameter(f"must be a JSON object, got {text!r}", param_hint=option)
    return value


RESUMABLE_FIELDS = ("stop_timesteps", "time_budget_s")
"""The `TrainConfig` fields `--resume` may change; the run keeps the rest of its config."""
REGISTERED_AGENT_FIELDS = ("seed", "device", "algo_config", "torch_threads")
"""The `TrainConfig` options a registered agent reads (`--algo-config` holds its own config)."""


@config_options(TrainConfig, aliases={"env_id": ("--env",), "time_budget_s": ("--time-budget",)})
def train_command(
    context: typer.Context,
    out: Annotated[
        Path | None, typer.Option("--out", help="Run directory (a saved policy when done).")
    ] = None,
    config: TrainConfig = None,  # type: ignore[assignment]  (filled from the generated options)
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            help="Continue the run in this directory (its config; --stop-timesteps and --time-budget may change).",
        ),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    agent: Annotated[
        str,
        typer.Option(
            "--agent",
            help="rl (online, --backend/--algo), or a registered agent (agents.registry: dt4ier, tscac, sim2rec, "
            "supervised; --algo-config holds its config, --data its logs when it trains offline).",
        ),
    ] = "rl",
    data: Annotated[
        str | None,
        typer.Option(
            "--data", help="Offline agents: logs to train on (a path, or a fetched data set such as ml-100k)."
        ),
    ] = None,
    trust_checkpoint: Annotated[
        bool,
        typer.Option(
            "--trust-checkpoint",
            help="rllib --resume: restore RLlib's own checkpoint (pickles: only for a run you made yourself); "
            "without it, the weights are restored from the run's safetensors state.",
        ),
    ] = False,
) -> None:
    """Train an agent: online RL with a sequence-encoder policy (Stable-Baselines3 or Ray RLlib), or a
    registered agent (DT4IER, TSCAC, Sim2Rec, supervised).

    Every `TrainConfig` field is an option (`--field-name`). With only `--time-budget`, training runs
    until the budget is spent.
    """
    import dataclasses

    from agents.registry import AGENTS

    given = given_options(context, TrainConfig)
    try:
        if agent != "rl" and agent not in AGENTS:
            raise ValueError(f"--agent: unknown agent {agent!r}; known: rl, {', '.join(sorted(AGENTS))}")
        if agent != "rl":
            stray = sorted(given - set(REGISTERED_AGENT_FIELDS))
            if stray:
                raise ValueError(
                    f"{', '.join(_option(name) for name in stray)}: for --agent rl; --agent {agent} takes "
                    "its config as --algo-config JSON"
                )
        elif data is not None:
            offline = ", ".join(name for name, spec in sorted(AGENTS.items()) if spec.needs_data)
            raise ValueError(f"--data is for offline agents (--agent {offline})")
    except ValueError as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(2) from None
    if agent != "rl":
        _train_registered(AGENTS[agent], out, data, resume, config, progress, given)
        return
    from agents.training import check_env_config, train

    try:
        if resume is not None:
            if out is not None and out.resolve() != resume.resolve():
                raise ValueError(
                    "--resume continues the run in place; leave out --out or give the same directory"
                )
            stray = sorted(given - set(RESUMABLE_FIELDS))
            if stray:
                raise ValueError(
                    f"{', '.join(_option(name) for name in stray)}: --resume keeps the run's config; only "
                    "--stop-timesteps and --time-budget may change"
                )
            changes = {name: getattr(config, name) for name in given}
            if "time_budget_s" in given and "stop_timesteps" not in given:
                changes["stop_timesteps"] = UNLIMITED_STEPS  # a new budget alone: train until it is spent
            config = dataclasses.replace(TrainConfig.load(resume), **changes)
            out = resume
        else:
            if out is None:
                raise ValueError("give --out DIR (or --resume DIR)")
            if "stop_timesteps" not in given and config.time_budget_s is not None:
                config = dataclasses.replace(config, stop_timesteps=UNLIMITED_STEPS)
        check_env_config(config.env_id, config.env_config)
    except (ValueError, FileNotFoundError) as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(2) from None
    if trust_checkpoint and (resume is None or config.backend != "rllib"):
        typer.echo("Error: --trust-checkpoint only applies to --resume of an rllib run", err=True)
        raise typer.Exit(2)
    from recsim_env.errors import CheckpointError

    try:
        result = train(
            config, out, resume=resume is not None, progress=progress, trust_checkpoint=trust_checkpoint
        )
    except CheckpointError as error:  # a resumed run's state that does not parse
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(2) from None
    evaluation = (
        f"; last evaluation mean return {result.last_eval_return:.3f}"
        if result.last_eval_return is not None
        else ""
    )
    typer.echo(
        f"trained {result.timesteps} steps in {result.elapsed_s:.1f} s{evaluation}; policy saved in {result.out}"
    )


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _train_registered(spec, out, data, resume, train_config, progress, given) -> None:
    """`seqrec train --agent NAME --out DIR [--data PATH]`: a registered agent, trained in one go."""
    import dataclasses
    import time

    try:
        if resume is not None:
            raise ValueError(f"--resume is for the rl agent; {spec.name} trains in one go")
        if out is None:
            raise ValueError(f"--agent {spec.name} needs --out DIR")
        from recsim_env.checkpoint import check_replaceable

        check_replaceable(out)
        if spec.needs_data and data is None:
            raise ValueError(f"--agent {spec.name} trains offline: give --data PATH")
        if not spec.needs_data and data is not None:
            raise ValueError(f"--agent {spec.name} trains in simulators; --data does not apply")
        config_class = spec.config_class
        names = {f.name for f in dataclasses.fields(config_class)}
        chosen = {"seed": train_config.seed, "device": train_config.device}
        fields = {key: value for key, value in chosen.items() if key in names}
        fields.update(train_config.algo_config)
        unknown = sorted(set(fields) - names)
        if unknown:
            raise ValueError(
                f"--algo-config: unknown {spec.name} config key(s) {unknown}; known: {sorted(names)}"
            )
        fields = {
            key: tuple(value) if isinstance(value, list) else value for key, value in fields.items()
        }  # JSON lists are the configs' tuples
        config = config_class(**fields)
        logs = None
        if spec.needs_data:
            from recsim_env.data import load

            logs = load(data)
        if "torch_threads" in given:  # else the agent keeps torch's default
            set_torch_threads(train_config.torch_threads)
        started = time.perf_counter()
        policy, info = spec.fit_function(config, logs, progress)
    except (ValueError, TypeError, FileNotFoundError) as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(2) from None
    policy.save(out)
    typer.echo(
        f"trained {spec.name} in {time.perf_counter() - started:.1f} s ({json.dumps(info, default=str)}); "
        f"policy saved in {out}"
    )


def evaluate_command(
    context: typer.Context,
    target: Annotated[
        Path | None, typer.Argument(help="A saved policy directory (any agent or backend).")
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy",
            help="A reference policy instead: uniform, popularity, greedy (fitted on logs), or "
            "filter-myopic, filter-farsighted, myopic-oracle, farsighted-oracle (they know the world; docs/reference_policies.md).",
        ),
    ] = None,
    env: Annotated[str, typer.Option("--env", help="Environment id.")] = "SeqRec-v0",
    env_config: Annotated[
        str | None, typer.Option("--env-config", help="Environment arguments (JSON).")
    ] = None,
    episodes: Annotated[int, typer.Option("--episodes", min=2, help="Episodes to roll out.")] = 1000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    deterministic: Annotated[
        bool | None,
        typer.Option(
            "--deterministic/--sample",
            help="Act on the policy's most probable item, or sample from it [default: most probable for a saved "
            "policy, as SB3's evaluate_policy and RLlib's evaluation do; sampled for the uniform and popularity "
            "baselines, which are distributions].",
            show_default=False,
        ),
    ] = None,
    logs: Annotated[
        Path | None,
        typer.Option("--logs", help="Logs to fit popularity/greedy on (default: uniform world logs)."),
    ] = None,
    log_steps: Annotated[
        int, typer.Option("--log-steps", min=1, help="Steps of uniform world logs to fit on.")
    ] = 50_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    threads: Annotated[
        int,
        typer.Option(
            "--threads",
            min=0,
            help="torch threads (1 is fastest for batches of a few dozen users; 0: torch's default).",
        ),
    ] = 1,
) -> None:
    """Roll out a saved policy or a baseline; mean return (95% CI), click rate, session length, return gap."""
    set_torch_threads(threads)
    from agents.training import check_env_config

    try:
        if (target is None) == (policy is None):
            raise ValueError("give a policy directory or --policy NAME (one of them)")
        if policy is not None and policy not in BASELINE_NAMES + REFERENCE_NAMES:
            raise ValueError(
                f"--policy: unknown policy {policy!r}; known: {', '.join(BASELINE_NAMES + REFERENCE_NAMES)}"
            )
        if env != "SeqRec-v0":
            raise ValueError(f"--env: evaluation rolls out SeqRec-v0 (its native vector env), got {env!r}")
        env_kwargs = _json_option(env_config, "--env-config")
        if policy in REFERENCE_NAMES:
            ignored = [
                option
                for name, option in (
                    ("deterministic", "--deterministic/--sample"),
                    ("logs", "--logs"),
                    ("log_steps", "--log-steps"),
                )
                if (source := context.get_parameter_source(name)) is not None and source.name != "DEFAULT"
            ]
            if ignored:
                raise ValueError(
                    f"{', '.join(ignored)}: --policy {policy} is deterministic and fitted on no logs"
                )
        if policy in REFERENCE_NAMES and any(env_kwargs.get(key) is not None for key in LEARNED_USER_KEYS):
            raise ValueError(
                f"--policy {policy}: knows the world's equations, so it needs the world "
                f"(no {', '.join(LEARNED_USER_KEYS)} in --env-config)"
            )
        _, action_space = check_env_config(env, env_kwargs)
        if policy in REFERENCE_NAMES:
            agent = _world_reference(policy, env_kwargs, action_space)
        else:
            agent = _load_agent(
                target, policy, env_kwargs, action_space, logs, log_steps, seed, progress=not as_json
            )
    except (ValueError, FileNotFoundError) as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(2) from None

    if deterministic is None:
        deterministic = target is not None
    from tqdm.auto import tqdm

    from recsim_env.rollout import rollout

    with tqdm(total=episodes, desc="evaluate", unit="episode", disable=as_json) as bar:
        stats = rollout(
            agent,
            n_episodes=episodes,
            seed=seed,
            deterministic=deterministic,
            on_episode=bar.update,
            **env_kwargs,
        )
    if as_json:
        typer.echo(json.dumps(stats.as_dict()))
        return
    low, high = stats.return_ci95
    typer.echo(
        f"{stats.policy}: mean return {stats.mean_return:.3f} (95% CI {low:.3f}-{high:.3f}) over {stats.episodes} "
        f"episodes; click rate {stats.click_rate:.3f}; session length {stats.session_length:.1f}; "
        f"return gap {stats.return_gap_days:.2f} days"
    )


def _world_reference(name, env_kwargs, action_space):
    """The world reference `name` over the environment's world (its `world_config`)."""
    from gymnasium import spaces

    from recsim_env.policies import reference_policy
    from recsim_env.world import UserWorld, WorldConfig

    world_config = env_kwargs.get("world_config")
    if isinstance(world_config, dict):
        world_config = WorldConfig(**world_config)  # already checked by check_env_config
    slate_size = 1 if isinstance(action_space, spaces.Discrete) else int(len(action_space.nvec))
    return reference_policy(name, UserWorld(world_config), slate_size=slate_size)


def _load_agent(target, policy, env_kwargs, action_space, logs, log_steps, seed, progress):
    from gymnasium import spaces

    from agents import load_policy
    from agents.baselines import baseline_policy, fit_baseline

    if target is not None:
        return load_policy(target)
    slate_size = 1 if isinstance(action_space, spaces.Discrete) else int(len(action_space.nvec))
    n_items = int(action_space.n) if isinstance(action_space, spaces.Discrete) else int(action_space.nvec[0])
    if policy == "uniform":
        return baseline_policy("uniform", n_items=n_items, slate_size=slate_size, seed=seed)
    if logs is not None:
        from recsim_env.data import load

        data = load(logs)
    else:
        from recsim_env.world import WorldConfig
        from recsim_env.world.logging import log_world

        world_config = env_kwargs.get("world_config")
        if isinstance(world_config, dict):
            world_config = WorldConfig(**world_config)  # already checked by check_env_config
        data = log_world("uniform", steps=log_steps, seed=seed, world_config=world_config, progress=progress)
    if data.n_items != n_items:
        raise ValueError(f"--logs: the logs have {data.n_items} items but the environment has {n_items}")
    return fit_baseline(policy, data, slate_size=slate_size, seed=seed)


def convert_command(
    source: Annotated[Path, typer.Argument(help="A directory saved by an older version (format 1).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the converted artifact here instead of replacing SOURCE."),
    ] = None,
) -> None:
    """Convert a saved encoder, simulator, policy or training run of format 1 to today's format, once.

    Reads tensors only through `torch.load(weights_only=True)` and arrays with `allow_pickle=False`;
    pickled SB3 attributes and replay buffers are not read (see docs/security.md).
    """
    from agents.convert import convert
    from recsim_env.errors import RecsimError

    try:
        where, what = convert(source, out)
    except (RecsimError, FileNotFoundError) as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"converted {source} ({what}); saved in {where}")
