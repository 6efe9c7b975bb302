"""`seqrec train` and `seqrec evaluate` (discovered through the `seqrec.commands` entry points).

Light at import: torch, SB3 and Ray load inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

BASELINE_NAMES = ("uniform", "popularity", "greedy")


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


def train_command(
    out: Annotated[
        Path | None, typer.Option("--out", help="Run directory (a saved policy when done).")
    ] = None,
    backend: Annotated[str, typer.Option("--backend", help="sb3 or rllib.")] = "sb3",
    algo: Annotated[str, typer.Option("--algo", help="sb3: ppo, a2c, dqn; rllib: ppo, dqn.")] = "ppo",
    env: Annotated[str, typer.Option("--env", help="Environment id.")] = "SeqRec-v0",
    env_config: Annotated[
        str | None, typer.Option("--env-config", help="Environment arguments (JSON).")
    ] = None,
    encoder: Annotated[str, typer.Option("--encoder", help="sasrec, bert4rec, hstu or gru4rec.")] = "sasrec",
    encoder_config: Annotated[
        str | None, typer.Option("--encoder-config", help="Encoder config (JSON).")
    ] = None,
    encoder_checkpoint: Annotated[
        Path | None, typer.Option("--encoder-checkpoint", help="Start from a pretrained encoder directory.")
    ] = None,
    freeze_encoder: Annotated[bool, typer.Option("--freeze-encoder", help="Train only the heads.")] = False,
    mask_history: Annotated[
        bool, typer.Option("--mask-history", help="rllib: never recommend items in the observed history.")
    ] = False,
    num_envs: Annotated[
        int, typer.Option("--num-envs", min=1, help="Users stepped together per process.")
    ] = 8,
    num_env_runners: Annotated[
        int, typer.Option("--num-env-runners", min=0, help="rllib: sampling workers.")
    ] = 0,
    stop_timesteps: Annotated[
        int | None, typer.Option("--stop-timesteps", min=1, help="Total environment steps [default: 100000].")
    ] = None,
    time_budget: Annotated[
        float | None, typer.Option("--time-budget", help="Stop after this many seconds of training.")
    ] = None,
    eval_interval: Annotated[
        int, typer.Option("--eval-interval", min=1, help="Steps between evaluations.")
    ] = 10_000,
    eval_episodes: Annotated[
        int, typer.Option("--eval-episodes", min=1, help="Episodes per evaluation.")
    ] = 20,
    algo_config: Annotated[
        str | None, typer.Option("--algo-config", help="Extra algorithm arguments (JSON).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")] = "cpu",
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            help="Continue the run in this directory (its config; --stop-timesteps may raise the goal).",
        ),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    agent: Annotated[
        str,
        typer.Option(
            "--agent",
            help="rl (online, --backend/--algo), or a registered agent (agents.registry: dt4ier, tscac, sim2rec; "
            "--algo-config holds its config, --data its logs when it trains offline).",
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
    """Train an RL agent with a sequence-encoder policy (Stable-Baselines3 or Ray RLlib), or DT4IER offline."""
    from agents.registry import AGENTS

    if agent != "rl" and agent not in AGENTS:
        typer.echo(f"Error: --agent: unknown agent {agent!r}; known: rl, {', '.join(sorted(AGENTS))}", err=True)
        raise typer.Exit(2)
    if agent != "rl":
        _train_registered(AGENTS[agent], out, data, resume, algo_config, seed, device, progress)
        return
    if data is not None:
        offline = ", ".join(name for name, spec in sorted(AGENTS.items()) if spec.needs_data)
        typer.echo(f"Error: --data is for offline agents (--agent {offline})", err=True)
        raise typer.Exit(2)
    from agents.training import TrainConfig, check_env_config, train

    try:
        if resume is not None:
            if out is not None and out.resolve() != resume.resolve():
                raise ValueError(
                    "--resume continues the run in place; leave out --out or give the same directory"
                )
            config = TrainConfig.load(resume)
            changes: dict[str, Any] = {}
            if stop_timesteps is not None:
                changes["stop_timesteps"] = stop_timesteps
            if time_budget is not None:
                changes["time_budget_s"] = time_budget
            config = TrainConfig(**{**config.to_dict(), **changes})
            out = resume
        else:
            if out is None:
                raise ValueError("give --out DIR (or --resume DIR)")
            config = TrainConfig(
                backend=backend,
                algo=algo,
                env_id=env,
                env_config=_json_option(env_config, "--env-config"),
                encoder=encoder,
                encoder_config=_json_option(encoder_config, "--encoder-config"),
                encoder_checkpoint=str(encoder_checkpoint) if encoder_checkpoint is not None else None,
                freeze_encoder=freeze_encoder,
                mask_history=mask_history,
                num_envs=num_envs,
                num_env_runners=num_env_runners,
                stop_timesteps=stop_timesteps if stop_timesteps is not None else 100_000,
                time_budget_s=time_budget,
                eval_interval=eval_interval,
                eval_episodes=eval_episodes,
                seed=seed,
                device=device,
                algo_config=_json_option(algo_config, "--algo-config"),
            )
        check_env_config(config.env_id, config.env_config)
    except (ValueError, FileNotFoundError) as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(2) from None
    if trust_checkpoint and (resume is None or config.backend != "rllib"):
        typer.echo("Error: --trust-checkpoint only applies to --resume of an rllib run", err=True)
        raise typer.Exit(2)
    from recsim_env.errors import CheckpointError

    try:
        result = train(config, out, resume=resume is not None, progress=progress, trust_checkpoint=trust_checkpoint)
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


def _train_registered(spec, out, data, resume, algo_config, seed, device, progress) -> None:
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
        fields = {key: value for key, value in {"seed": seed, "device": device}.items() if key in names}
        fields.update(_json_option(algo_config, "--algo-config"))
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
    target: Annotated[
        Path | None, typer.Argument(help="A saved policy directory (any agent or backend).")
    ] = None,
    policy: Annotated[
        str | None, typer.Option("--policy", help="A baseline instead: uniform, popularity, greedy.")
    ] = None,
    env: Annotated[str, typer.Option("--env", help="Environment id.")] = "SeqRec-v0",
    env_config: Annotated[
        str | None, typer.Option("--env-config", help="Environment arguments (JSON).")
    ] = None,
    episodes: Annotated[int, typer.Option("--episodes", min=2, help="Episodes to roll out.")] = 1000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    deterministic: Annotated[
        bool, typer.Option("--deterministic", help="The policy's most probable action.")
    ] = False,
    logs: Annotated[
        Path | None,
        typer.Option("--logs", help="Logs to fit popularity/greedy on (default: uniform world logs)."),
    ] = None,
    log_steps: Annotated[
        int, typer.Option("--log-steps", min=1, help="Steps of uniform world logs to fit on.")
    ] = 50_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Roll out a saved policy or a baseline; mean return (95% CI), click rate, session length, return gap."""
    from agents.training import check_env_config

    try:
        if (target is None) == (policy is None):
            raise ValueError("give a policy directory or --policy NAME (one of them)")
        if policy is not None and policy not in BASELINE_NAMES:
            raise ValueError(f"--policy: unknown baseline {policy!r}; known: {', '.join(BASELINE_NAMES)}")
        if env != "SeqRec-v0":
            raise ValueError(f"--env: evaluation rolls out SeqRec-v0 (its native vector env), got {env!r}")
        env_kwargs = _json_option(env_config, "--env-config")
        _, action_space = check_env_config(env, env_kwargs)
        agent = _load_agent(
            target, policy, env_kwargs, action_space, logs, log_steps, seed, progress=not as_json
        )
    except (ValueError, FileNotFoundError) as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(2) from None

    from tqdm.auto import tqdm

    from agents.policy import rollout_policy

    with tqdm(total=episodes, desc="evaluate", unit="episode", disable=as_json) as bar:
        stats = rollout_policy(
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


def _load_agent(target, policy, env_kwargs, action_space, logs, log_steps, seed, progress):
    from gymnasium import spaces

    from agents import load_policy
    from agents.baselines import BaselinePolicy, fit_baseline

    if target is not None:
        return load_policy(target)
    slate_size = 1 if isinstance(action_space, spaces.Discrete) else int(len(action_space.nvec))
    n_items = int(action_space.n) if isinstance(action_space, spaces.Discrete) else int(action_space.nvec[0])
    if policy == "uniform":
        return BaselinePolicy("uniform", n_items=n_items, slate_size=slate_size, seed=seed)
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
        Path | None, typer.Option("--out", help="Write the converted artifact here instead of replacing SOURCE.")
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
