"""Poisoned learned simulators, and the policies they train, measured in the ground-truth world.

A learned simulator is fitted on logs; an attacker who injects fake users into those logs (a
`poisoning.poison` attack promoting target items) changes what the simulator believes about the targets,
and a policy trained in the simulator acts on that belief. In the world of `recsim_env.world` the truth
is known, so both effects can be measured:

1. **Log** `steps` world steps with a logging policy (`recsim_env.world.logging.log_world`, as
   `seqrec world log` does).
2. **Poison** the log: `fraction` fake users promoting `targets` (by default `n_targets` items drawn by
   seed from the world's least popular half, the items an attacker gains most by promoting).
3. **Fit** one simulator per arm, same settings and seed:
   - `clean`: on the world log;
   - `poisoned`: on the log plus the fake users;
   - `defended`: on the poisoned log, each user weighed by the defence's weight (`simulators.fit`'s
     `user_weights`); the defence (LoRec's calibrator, `evaluation.attacks.defence.defend`) sees the
     logs and the poisoned simulator's item vectors, not which users are fake;
   - `oracle` (optional): on the poisoned log with the fake users at weight 0, the ceiling of any
     reweighting defence (it knows the labels; a reference, not a defence).
4. **Probe** (a): in each simulator and in the world, a probe policy shows a target at a `probe_share`
   of the steps (a uniformly drawn one) and a uniformly drawn item otherwise; the target's click rate
   when shown is the simulated users' click probability on the target, next to the world's true one.
5. **Deploy** (b): each simulator's policy, `simulators.greedy.SimulatorGreedyPolicy` (the items the
   simulator predicts are clicked most: the optimum, for the click reward, of a myopic policy trained in
   that simulator), is rolled out in the world (`recsim_env.rollout.rollout_episodes`), counting how
   often a target is shown and clicked per 1,000 steps, with the world return; uniform is the reference.

Every step is seeded; on the CPU a run is bit-for-bit reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from evaluation.attacks.poisoning import ATTACK_KINDS
from recsim_env.checks import check_bool, check_choice, check_config_fields, check_integer, check_real
from recsim_env.errors import ArgumentError
from recsim_env.policies import ReferencePolicy, sample_slates
from recsim_env.world.logging import LOGGING_POLICIES

ARMS = ("clean", "poisoned", "defended", "oracle")
"""The simulators a run fits (`oracle` only with `WorldAttackConfig.oracle`)."""
BOOTSTRAP_SAMPLES = 200
"""Resamples of episodes behind each per-1,000-steps interval."""

Defence = Callable[[Any, int, np.ndarray], np.ndarray]
"""`defence(poisoned_logs, seed, item_table) -> [n_users]` user weights: a poisoning defence that sees the
logs and `item_table` [n_items, D], the item vectors of the simulator fitted on them (as LoRec's calibrator
reads the defended recommender's item embeddings), never which users are fake."""


@dataclass(frozen=True, kw_only=True)
class WorldAttackConfig:
    """One clean / poisoned / defended comparison of learned simulators and their policies in the world."""

    steps: int = 100_000
    """World steps logged (one row each with slates of one item)."""
    logger: str = "uniform"
    """Logging policy of the world log (`recsim_env.world.logging.LOGGING_POLICIES`)."""
    kind: str = "sequential"
    """Attack (`evaluation.attacks.poisoning.ATTACK_KINDS`)."""
    fraction: float = 0.01
    """Fake users as a fraction of the logged (real) users, in (0, 1)."""
    n_targets: int = 1
    """Targets drawn by seed from the world's least popular half of the catalogue (without `targets`)."""
    targets: tuple[int, ...] = ()
    """Target item ids (the world's item indices); empty: `n_targets` drawn items."""
    target_share: float = 0.1
    """Share of each fake user's events that are target events (`PoisonConfig.target_share`)."""
    simulator: Mapping[str, Any] = field(default_factory=dict)
    """`SimulatorConfig` fields of every arm's simulator (its `seed` is this config's `seed`)."""
    epochs: int = 5
    """Training epochs of each simulator (no early wall-clock cap: reproducible)."""
    oracle: bool = True
    """Also fit the `oracle` arm (fake users at weight 0: the ceiling of reweighting defences)."""
    probe_share: float = 0.5
    """Share of the probe policy's steps that show a target."""
    probe_episodes: int = 300
    """Episodes of the probe policy in the world and in each simulator."""
    policy_episodes: int = 300
    """Episodes of each simulator's policy (and of uniform) in the world."""
    sessions_per_episode: int = 3
    """Sessions per rollout episode (the world log follows each user for 3)."""
    max_steps: int = 50
    """Steps per session at most, in rollouts."""
    seed: int = 0
    """Seed of the log, the targets, the attack, the defence, the fits and the rollouts."""

    def __post_init__(self) -> None:
        check_config_fields(self, ("steps", "n_targets", "epochs"), check_integer, low=1)
        check_config_fields(self, ("probe_episodes", "policy_episodes"), check_integer, low=1)
        check_config_fields(self, ("sessions_per_episode", "max_steps"), check_integer, low=1)
        check_config_fields(self, ("seed",), check_integer, low=0)
        check_config_fields(self, ("logger",), check_choice, choices=LOGGING_POLICIES)
        check_config_fields(self, ("fraction",), check_real, low=0.0, high=1.0, low_open=True, high_open=True)
        check_config_fields(
            self, ("target_share", "probe_share"), check_real, low=0.0, high=1.0, low_open=True
        )
        check_config_fields(self, ("oracle",), check_bool)
        check_config_fields(self, ("kind",), check_choice, choices=ATTACK_KINDS)
        if isinstance(self.targets, str | bytes) or not isinstance(self.targets, tuple | list):
            raise ArgumentError(
                f"WorldAttackConfig.targets must be a tuple of item ids, got {self.targets!r}"
            )
        object.__setattr__(self, "targets", tuple(int(t) for t in self.targets))
        if not isinstance(self.simulator, Mapping):
            raise ArgumentError(
                f"WorldAttackConfig.simulator must be a dict of SimulatorConfig fields, got {self.simulator!r}"
            )
        reserved = sorted({"seed", "epochs"} & set(self.simulator))
        if reserved:
            raise ArgumentError(f"WorldAttackConfig.simulator: set {reserved} on WorldAttackConfig itself")
        try:
            self.simulator_config()
        except TypeError as err:  # an unknown field
            raise ArgumentError(f"WorldAttackConfig.simulator: {err}") from None

    def simulator_config(self):
        """The `SimulatorConfig` of every arm: `simulator`'s fields, `epochs` epochs, no time cap, `seed`."""
        from simulators import SimulatorConfig

        return SimulatorConfig(
            **{
                "epochs": self.epochs,
                "patience": self.epochs,
                "max_train_minutes": float("inf"),
                **dict(self.simulator),
                "seed": self.seed,
            }
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["targets"], out["simulator"] = list(self.targets), dict(self.simulator)
        return out


# ----------------------------------------------------------------------------------- policies and counts
class TargetProbePolicy(ReferencePolicy):
    """Show a uniformly drawn target with probability `share`, else a uniformly drawn item (slates of one).

    In any environment, the targets' click rate when shown is the users' click probability on a target
    after histories of mostly random items (the world's logs are uniform by default). Deterministic: its
    most probable item (a target; ties to the lowest index)."""

    name = "target-probe"

    def __init__(self, n_items: int, targets: np.ndarray, share: float) -> None:
        super().__init__(int(n_items))
        self.targets = np.asarray(targets, dtype=np.int64)
        self.share = float(share)

    def slates(self, batch, deterministic, user_state) -> np.ndarray:
        if deterministic:
            return sample_slates(self.probabilities(batch, user_state), 1, self.rng, True)
        n = batch["item_ids"].shape[0]
        show_target = self.rng.random(n) < self.share
        items = np.where(
            show_target, self.rng.choice(self.targets, size=n), self.rng.integers(0, self.n_items, size=n)
        )
        return items[:, None]

    def probabilities(self, batch, user_state) -> np.ndarray:
        p = np.full(self.n_items, (1.0 - self.share) / self.n_items)
        np.add.at(p, self.targets, self.share / len(self.targets))
        return np.broadcast_to(p, (batch["item_ids"].shape[0], self.n_items)).copy()


def target_counts(records, targets: np.ndarray, seed: int) -> dict[str, Any]:
    """How often the rollout `records` (`EpisodeRecords`) showed and had clicked a target at the first
    slate position: totals, per 1,000 steps (with a 95% bootstrap interval over episodes), the targets'
    click rate when shown, the other items' (None where none was shown), the click rate and the mean
    return."""
    steps = np.array([len(items) for items in records.first_items], dtype=np.float64)
    shown = [np.isin(items, targets) for items in records.first_items]
    target_shown = np.array([s.sum() for s in shown], dtype=np.float64)
    target_clicked = np.array(
        [(s & c).sum() for s, c in zip(shown, records.first_consumed)], dtype=np.float64
    )
    clicks = np.array([c.sum() for c in records.first_consumed], dtype=np.float64)
    rng = np.random.default_rng(seed)
    resamples = rng.integers(0, len(steps), size=(BOOTSTRAP_SAMPLES, len(steps)))

    def per_1000(counts: np.ndarray) -> tuple[float, list[float]]:
        value = 1000.0 * counts.sum() / steps.sum()
        boot = 1000.0 * counts[resamples].sum(axis=1) / steps[resamples].sum(axis=1)
        return float(value), [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))]

    shown_rate, shown_ci = per_1000(target_shown)
    clicked_rate, clicked_ci = per_1000(target_clicked)
    n_shown, n_clicked = float(target_shown.sum()), float(target_clicked.sum())
    other_shown = steps.sum() - n_shown
    return {
        "episodes": len(steps),
        "steps": int(steps.sum()),
        "target_shown": int(n_shown),
        "target_clicked": int(n_clicked),
        "target_shown_per_1000": shown_rate,
        "target_shown_per_1000_ci95": shown_ci,
        "target_clicked_per_1000": clicked_rate,
        "target_clicked_per_1000_ci95": clicked_ci,
        "target_click_rate_when_shown": n_clicked / n_shown if n_shown else None,
        "other_click_rate_when_shown": float((clicks.sum() - n_clicked) / other_shown)
        if other_shown
        else None,
        "click_rate": float(clicks.sum() / steps.sum()),
        "mean_return": float(records.returns.mean()),
    }


def pick_targets(world, n_targets: int, seed: int) -> np.ndarray:
    """`n_targets` item indices drawn by `seed` from the world's least popular half (by its true mean click
    probability, `UserWorld.item_popularity`), sorted."""
    popularity = world.item_popularity()
    unpopular = np.flatnonzero(popularity < np.median(popularity))
    if n_targets > len(unpopular):
        raise ArgumentError(f"n_targets: the world's least popular half has only {len(unpopular)} items")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(unpopular, size=n_targets, replace=False)).astype(np.int64)


def default_defence(data, seed: int, item_table: np.ndarray | None = None) -> np.ndarray:
    """LoRec's weights (`evaluation.attacks.defence.defend`, its default settings and `seed`): calibrator
    fits on the sequences' features and their coherence under `item_table`, the defended model's item
    vectors (fixed here: the poisoned simulator's, where LoRec alternates recommender epochs and fits)."""
    from evaluation.attacks.defence import DefenceConfig, defend

    return np.asarray(defend(data, DefenceConfig(seed=seed), item_table=item_table), dtype=np.float64)


def weight_separation(weights: np.ndarray, fake: np.ndarray) -> dict[str, float]:
    """How well weights tell the fake users (labels used to evaluate only): mean weight of each group and
    the AUC of a low weight for being fake, P(w_fake < w_real) + P(w_fake = w_real) / 2 over all pairs
    (1: every fake user below every real one, 0.5: chance)."""
    real_w, fake_w = np.sort(weights[~fake]), weights[fake]
    auc = float("nan")
    if len(real_w) and len(fake_w):
        above = len(real_w) - np.searchsorted(real_w, fake_w, side="right")
        ties = np.searchsorted(real_w, fake_w, side="right") - np.searchsorted(real_w, fake_w, side="left")
        auc = float((above + 0.5 * ties).sum() / (len(real_w) * len(fake_w)))
    return {
        "mean_weight_real": float(real_w.mean()) if len(real_w) else float("nan"),
        "mean_weight_fake": float(fake_w.mean()) if len(fake_w) else float("nan"),
        "fake_auc": auc,
    }


def _item_table(simulator) -> np.ndarray:
    """`[n_items, D]` float64 item vectors of the simulator's first member (`ResponseModel.item_vectors`)."""
    import torch

    with torch.inference_mode():
        vectors = simulator.members[0].item_vectors(torch.arange(simulator.n_items))
    return vectors.double().numpy()


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


# ---------------------------------------------------------------------------------------------- the run
@dataclass
class WorldAttackResult:
    """What `run_world_attack` measured (`to_dict` is the report's JSON)."""

    config: WorldAttackConfig
    targets: np.ndarray
    n_real_users: int
    n_fake_users: int
    defence: dict[str, float]
    world_probe: dict[str, Any]
    uniform_in_world: dict[str, Any]
    arms: dict[str, dict[str, Any]]
    seconds: float
    simulators: dict[str, Any] = field(default_factory=dict, repr=False)
    """The fitted simulators by arm (not in `to_dict`)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "targets": self.targets.tolist(),
            "n_real_users": self.n_real_users,
            "n_fake_users": self.n_fake_users,
            "defence": self.defence,
            "world_probe": self.world_probe,
            "uniform_in_world": self.uniform_in_world,
            "arms": self.arms,
            "seconds": self.seconds,
        }


def run_world_attack(
    config: WorldAttackConfig | None = None,
    *,
    defence: Defence | None = None,
    world_config=None,
    progress: bool = False,
    num_threads: int | None = 1,
) -> WorldAttackResult:
    """Log, poison, fit the arms' simulators, probe them and deploy their policies in the world.

    Args:
        config: the comparison (None: the defaults).
        defence: `defence(poisoned_logs, seed, item_table) -> [n_users]` user weights for the `defended`
            arm (`Defence`; None: `default_defence`, LoRec's calibrator).
        world_config: the world's `WorldConfig` (None: the default world of `SeqRec-v0`).
        progress: progress bars (logging, fits, rollouts).
        num_threads: torch threads while fitting and scoring.

    Returns:
        A `WorldAttackResult`.
    """
    import time

    from tqdm.auto import tqdm

    from evaluation.attacks.poisoning import PoisonConfig, poison
    from recsim_env.encoders.trainer import torch_threads
    from recsim_env.policies import UniformPolicy
    from recsim_env.rollout import rollout_episodes
    from recsim_env.world import UserWorld
    from recsim_env.world.logging import log_world
    from simulators import fit
    from simulators.greedy import SimulatorGreedyPolicy

    config = config or WorldAttackConfig()
    defence = defence or default_defence
    started = time.perf_counter()
    world = UserWorld(world_config)
    targets = np.asarray(config.targets, dtype=np.int64) if config.targets else None
    if targets is None:
        targets = pick_targets(world, config.n_targets, config.seed)
    elif targets.min() < 0 or targets.max() >= world.n_items:
        raise ArgumentError(f"targets: item ids must lie in [0, {world.n_items}), got {targets.tolist()}")

    logs = log_world(
        config.logger, steps=config.steps, seed=config.seed, world_config=world.config, progress=progress
    )
    attack = PoisonConfig(
        kind=config.kind,
        fraction=config.fraction,
        targets=tuple(int(t) for t in targets),
        target_share=config.target_share,
        seed=config.seed,
    )
    poisoned = poison(logs, attack)
    sim_config = config.simulator_config()
    env = {
        "history_len": sim_config.history_len,
        "sessions_per_episode": config.sessions_per_episode,
        "max_steps": config.max_steps,
    }
    probe = TargetProbePolicy(world.n_items, targets, config.probe_share)
    rollout_seed = config.seed + 7

    def counts(policy, episodes: int, **env_kwargs) -> dict[str, Any]:
        records = rollout_episodes(policy, n_episodes=episodes, seed=rollout_seed, num_envs=256, **env_kwargs)
        return target_counts(records, targets, config.seed)

    world_probe = counts(probe, config.probe_episodes, world_config=world.config, **env)
    uniform = counts(UniformPolicy(world.n_items), config.policy_episodes, world_config=world.config, **env)
    arms: dict[str, dict[str, Any]] = {}
    simulators: dict[str, Any] = {}
    weights = None

    def arm_weights(arm: str) -> np.ndarray | None:
        """The arm's user weights; the defence's are computed once the poisoned simulator exists."""
        nonlocal weights
        if arm == "defended":
            table = _item_table(simulators["poisoned"])
            weights = np.asarray(defence(poisoned.data, config.seed, table), dtype=np.float64)
            if weights.shape != (poisoned.data.n_users,):
                raise ArgumentError(
                    f"defence: returned weights of shape {weights.shape}, expected ({poisoned.data.n_users},)"
                )
            return weights
        return (~poisoned.fake_users).astype(np.float64) if arm == "oracle" else None

    with torch_threads(num_threads):
        for arm in tqdm(ARMS if config.oracle else ARMS[:3], desc="arms", disable=not progress):
            data = logs if arm == "clean" else poisoned.data
            user_weights = arm_weights(arm)
            fit_started = time.perf_counter()
            result = fit(
                data, sim_config, progress=progress, num_threads=num_threads, user_weights=user_weights
            )
            simulator = result.simulator
            simulators[arm] = simulator
            fit_seconds = time.perf_counter() - fit_started
            in_simulator = counts(probe, config.probe_episodes, user_model=simulator, **env)
            greedy = SimulatorGreedyPolicy(simulator)
            deployed = counts(
                greedy,
                config.policy_episodes,
                world_config=world.config,
                user_features=bool(simulator.n_user_features),
                **env,
            )
            arms[arm] = {
                "fit_seconds": fit_seconds,
                "epochs_trained": len(result.history),
                "best_valid_loss": min(h["valid_loss"] for h in result.history),
                "probe_in_simulator": in_simulator,
                "target_click_rate_error": _difference(
                    in_simulator["target_click_rate_when_shown"], world_probe["target_click_rate_when_shown"]
                ),
                "policy_in_world": deployed,
            }
    return WorldAttackResult(
        config=config,
        targets=targets,
        n_real_users=int((~poisoned.fake_users).sum()),
        n_fake_users=int(poisoned.fake_users.sum()),
        defence=weight_separation(weights, poisoned.fake_users),
        world_probe=world_probe,
        uniform_in_world=uniform,
        arms=arms,
        seconds=time.perf_counter() - started,
        simulators=simulators,
    )


# ------------------------------------------------------------------------------------------- the report
REPORT_FILES = ("report.md", "report.json", "world_attack.png")


def _plot(result: WorldAttackResult) -> bytes:
    """Two panels: the targets' click rate when shown in each simulator and in the world; how often each
    arm's policy shows and gets clicked a target in the world, per 1,000 steps (95% intervals)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from evaluation.report_plots import figure_png

    arms = list(result.arms)
    fig = Figure(figsize=(10, 3.8))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    rates = [result.world_probe["target_click_rate_when_shown"]] + [
        result.arms[a]["probe_in_simulator"]["target_click_rate_when_shown"] for a in arms
    ]
    rates = [np.nan if r is None else r for r in rates]
    left.bar(["world"] + arms, rates, color=["tab:gray"] + ["tab:blue"] * len(arms))
    left.axhline(rates[0], color="tab:gray", linestyle="--", linewidth=1)
    left.set_ylabel("target click rate when shown")
    left.set_title("(a) simulated users vs the world (probe)")
    rows = [("uniform", result.uniform_in_world)] + [(a, result.arms[a]["policy_in_world"]) for a in arms]
    x = np.arange(len(rows))
    for offset, key, color in ((-0.2, "target_shown", "tab:orange"), (0.2, "target_clicked", "tab:green")):
        values = np.array([r[f"{key}_per_1000"] for _, r in rows])
        ci = np.array([r[f"{key}_per_1000_ci95"] for _, r in rows])
        errors = np.abs(ci.T - values)
        right.bar(
            x + offset, values, width=0.4, color=color, label=key.replace("_", " "), yerr=errors, capsize=3
        )
    right.set_xticks(x, [name for name, _ in rows])
    right.set_ylabel("per 1,000 world steps")
    right.set_title("(b) each simulator's policy in the world")
    right.legend(loc="best")
    fig.tight_layout()
    return figure_png(fig)


def _rate(value: float | None) -> str:
    return "(never shown)" if value is None else f"{value:.4f}"


def _markdown(result: WorldAttackResult) -> str:
    config = result.config
    d = result.to_dict()
    lines = [
        "# Poisoned learned simulators in the world",
        "",
        f"World log: {config.steps:,} steps of the `{config.logger}` logger; attack `{config.kind}` with "
        f"{result.n_fake_users} fake users ({config.fraction:.1%} of {result.n_real_users} real users), "
        f"targets {result.targets.tolist()} (share of target events per fake user {config.target_share:g}); "
        f"seed {config.seed}. Every simulator: {config.epochs} epochs, the same settings and seed.",
        "",
        f"Defence weights: real users {d['defence']['mean_weight_real']:.3f} on average, fake users "
        f"{d['defence']['mean_weight_fake']:.3f}; AUC of a low weight for being fake "
        f"{d['defence']['fake_auc']:.3f} (the labels are used here only, never by the defence).",
        "",
        "## (a) How often simulated users click a target when it is shown",
        "",
        f"Probe policy: a target at {config.probe_share:.0%} of the steps, a uniform item otherwise, "
        f"{config.probe_episodes} episodes of {config.sessions_per_episode} sessions in each environment.",
        "",
        "| environment | target click rate when shown | error vs world | other items' click rate |",
        "| --- | --- | --- | --- |",
        f"| world (truth) | {_rate(result.world_probe['target_click_rate_when_shown'])} | | "
        f"{_rate(result.world_probe['other_click_rate_when_shown'])} |",
    ]
    for arm, entry in result.arms.items():
        probe, error = entry["probe_in_simulator"], entry["target_click_rate_error"]
        lines.append(
            f"| {arm} simulator | {_rate(probe['target_click_rate_when_shown'])} | "
            f"{'' if error is None else f'{error:+.4f}'} | {_rate(probe['other_click_rate_when_shown'])} |"
        )
    lines += [
        "",
        "## (b) Each simulator's policy in the world",
        "",
        "Policy: the items the simulator predicts are clicked most (`simulators.greedy.SimulatorGreedyPolicy`), "
        f"{config.policy_episodes} world episodes; per 1,000 steps with 95% bootstrap intervals over episodes.",
        "",
        "| policy | target shown / 1,000 | target clicked / 1,000 | target click rate when shown | "
        "click rate | mean return |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    rows = [("uniform", result.uniform_in_world)] + [
        (f"{arm} simulator's", e["policy_in_world"]) for arm, e in result.arms.items()
    ]
    for name, r in rows:
        shown, clicked = r["target_shown_per_1000_ci95"], r["target_clicked_per_1000_ci95"]
        lines.append(
            f"| {name} | {r['target_shown_per_1000']:.2f} ({shown[0]:.2f}-{shown[1]:.2f}) | "
            f"{r['target_clicked_per_1000']:.2f} ({clicked[0]:.2f}-{clicked[1]:.2f}) | "
            f"{_rate(r['target_click_rate_when_shown'])} | {r['click_rate']:.4f} | {r['mean_return']:.2f} |"
        )
    lines += ["", "![world attack](world_attack.png)", ""]
    return "\n".join(lines)


def world_report(result: WorldAttackResult, directory) -> dict[str, Any]:
    """Write `report.md`, `report.json` (`result.to_dict()`) and `world_attack.png` into `directory`,
    atomically (all written to temporaries, then renamed); returns name -> path."""
    import json
    from pathlib import Path

    from evaluation.report import write_files_atomically

    files = {
        "report.md": _markdown(result).encode(),
        "report.json": (json.dumps(result.to_dict(), indent=2, allow_nan=True) + "\n").encode(),
        "world_attack.png": _plot(result),
    }
    return write_files_atomically(Path(directory), files)
