"""Fidelity of a simulator learned from world logs: click AUC / ECE against the world's truth, and the
value it gives each policy of a panel next to the world's (`simulators.policy_values`). Prints one JSON
line with `policy_values` (each panel policy's `world` and `simulator` mean return), `spearman` (rank
correlation over the policies with both), the relative errors and the session-length / return-gap KS
distances.

The panel: uniform, popularity and greedy (fitted on the simulator's training logs), filter-myopic and
filter-farsighted, the two oracles (world value only: they read the hidden state), `supervised` (trained
on the same logs) and two agents trained in the world with a time budget (SB3 PPO and DQN, the default
`seqrec train` agent and its DQN variant). Trained agents are kept in `--agents DIR` and reused.

    python benchmarks/simulator_fidelity.py [--quick] [--steps 200000] [--seed 0] [--out DIR] [--config JSON]
        [--simulator DIR] [--agents DIR] [--agent-seconds 120] [--episodes 1000]
    python benchmarks/simulator_fidelity.py --summarise seed0.json seed1.json seed2.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


def reference_click_aucs(logs, world, history_len: int = 20) -> dict:
    """What the logs let any model know: click AUC of logistic regressions on held-out logged users.

    Features (each model adds to the previous): the item (one-hot); the user's logged history (clicks and
    exposures in the candidate's category over the last `history_len` logged steps, the click rate so
    far, the history length); the users table's observable features (the noisy affinity to the
    candidate's category and log activity). The world's own AUC uses the hidden interest vector, which
    none of these sees. Held out: every user whose index is 0 mod 10.
    """
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    frame = logs.frame
    n = len(frame)
    users = frame["user_id"].to_numpy()
    items = frame["item_id"].to_numpy()  # indices; the world's logs keep item i at index i
    click = frame["click"].to_numpy()
    category = world.item_category[np.asarray(logs.item_ids.tokens, dtype=np.int64)[items]]
    n_categories = int(world.item_category.max()) + 1
    clicks_in_category = np.zeros(n)
    shown_in_category = np.zeros(n)
    click_rate = np.zeros(n)
    history = np.zeros(n)
    by_user = np.argsort(users, kind="stable")  # each user's rows, in time order
    for user_rows in np.split(by_user, np.flatnonzero(np.diff(users[by_user])) + 1):
        window_clicks = np.zeros((0, n_categories))
        for r in user_rows:
            recent = window_clicks[-history_len:]
            clicks_in_category[r] = recent[:, category[r]].clip(min=0).sum()
            shown_in_category[r] = (recent[:, category[r]] != 0).sum()
            click_rate[r] = recent.clip(min=0).sum() / max(len(recent), 1)
            history[r] = len(recent) / history_len
            row = np.zeros((1, n_categories))
            row[0, category[r]] = 1.0 if click[r] else -1.0  # +1 clicked, -1 shown without a click
            window_clicks = np.vstack([window_clicks[-history_len:], row])
    features = logs.users[[c for c in logs.users.columns if c.startswith("feature_")]].to_numpy()
    user_features = features[users]
    affinity = user_features[np.arange(n), category]
    one_hot = sp.csr_matrix((np.ones(n), (np.arange(n), items)), shape=(n, logs.n_items))
    history_block = np.c_[clicks_in_category, shown_in_category, click_rate, history]
    designs = {
        "item": one_hot,
        "item + logged history": sp.hstack([one_hot, history_block]).tocsr(),
        "item + logged history + user features": sp.hstack(
            [one_hot, history_block, np.c_[affinity, user_features[:, -1]]]
        ).tocsr(),
    }
    held_out = users % 10 == 0
    aucs = {}
    for name, x in designs.items():
        model = LogisticRegression(max_iter=3000).fit(x[~held_out], click[~held_out])
        aucs[name] = round(float(roc_auc_score(click[held_out], model.predict_proba(x[held_out])[:, 1])), 4)
    return aucs


def observation_click_auc(steps: int, seed: int) -> float:
    """Click AUC of a model that sees more than the logs: the env's observation (its history includes the
    10-item warm-start history that world logs do not record), the user features and the catalogue's true
    item embeddings. It is `ope_world.py`'s reward model (a logistic regression with item biases,
    state-by-category terms and the affinity of the clicked items' mean embedding to the candidate),
    cross-fitted over 3 folds on `steps` uniform-logging steps of one-session episodes (20 steps)."""
    from ope_world import StateFeatures, click_model_fit_predict, run_episodes
    from sklearn.metrics import roc_auc_score

    from recsim_env.world import UserWorld

    world = UserWorld()
    features = StateFeatures(world, 20)

    def uniform(x):
        return np.full((len(x), world.n_items), 1.0 / world.n_items)

    log = run_episodes(world, features, uniform, horizon=20, min_steps=steps, num_envs=1000, seed=seed)
    context, action, click = log.features[log.mask], log.action[log.mask], log.reward[log.mask]
    q = click_model_fit_predict(
        context,
        action,
        click,
        world.item_category,
        world.item_embeddings,
        features.embedding_slice,
        n_folds=3,
        seed=seed,
    )
    return round(float(roc_auc_score(click, q[np.arange(len(action)), action])), 4)


def interest_estimate_click_aucs(steps: int, seed: int, history_lens=(20, 50)) -> dict:
    """How close a model that knows the catalogue exactly can get to the world's AUC from what it observes.

    The world's true click probability uses the user's hidden interest vector u. Here u is estimated from
    the observation alone, but with the catalogue's *true* item embeddings, which a learned simulator has
    to discover: u_hat = the normalised sum of the embeddings of the items clicked in the last L exposures
    (the 10-item warm-start history included, as in `world_metrics`). A logistic regression on
    [<u_hat, e_c>, log(1 + clicks), their product, decayed same-category clicks (satiation), the user
    features' affinity to the candidate's category, the candidate's true item utility] is fit on the first
    half of `steps` uniform-policy steps (3-session episodes, as `world_metrics` runs them) and scored on the
    second half, next to the world's true probabilities on the same steps.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from recsim_env.envs.seqrec import SeqRecVectorEnv
    from recsim_env.world import UserWorld

    world = UserWorld()
    embeddings = np.vstack([world.item_embeddings, np.zeros((1, world.config.embedding_dim))])
    category = np.append(world.item_category, -1)
    decay = world.config.satiation_step_decay
    out = {}
    for length in history_lens:
        num_envs = 256
        env = SeqRecVectorEnv(
            num_envs=num_envs, sessions_per_episode=3, history_len=length, user_features=True
        )
        rng = np.random.default_rng(seed)
        obs, _ = env.reset(seed=seed)
        rows, just_reset = [], np.zeros(num_envs, dtype=bool)
        while len(rows) * num_envs < steps:
            action = rng.integers(0, world.n_items, size=num_envs)
            clicked = obs["feedback"][..., 0] > 0  # [N, L]
            u_hat = (embeddings[obs["item_ids"]] * clicked[..., None]).sum(axis=1)
            u_hat /= np.maximum(np.linalg.norm(u_hat, axis=1, keepdims=True), 1e-9)
            affinity = (u_hat * world.item_embeddings[action]).sum(axis=1)
            n_clicks = np.log1p(clicked.sum(axis=1))
            same = clicked & (category[obs["item_ids"]] == world.item_category[action][:, None])
            satiation = (same * decay ** np.arange(length)[::-1]).sum(axis=1)
            feature = obs["user_features"][np.arange(num_envs), world.item_category[action]]
            # One item at position 0: the world's choice probability is its click probability.
            true_p = world.click_probabilities(env.user_state)[np.arange(num_envs), action]
            obs, _, terminated, truncated, info = env.step(action)
            rows.append(
                np.c_[
                    affinity,
                    n_clicks,
                    affinity * n_clicks,
                    satiation,
                    feature,
                    world._item_utility[action],
                    true_p,
                    info["feedback"][:, 0],
                ][~just_reset]
            )
            just_reset = terminated | truncated
        table = np.vstack(rows)[:steps]
        half = len(table) // 2
        x, click = table[:, :6], table[:, 7]
        model = LogisticRegression(max_iter=3000).fit(x[:half], click[:half])
        out[f"L={length}"] = {
            "estimated_interest": round(
                float(roc_auc_score(click[half:], model.predict_proba(x[half:])[:, 1])), 4
            ),
            "world_truth": round(float(roc_auc_score(click[half:], table[half:, 6])), 4),
        }
    return out


def world_filter_click_auc(
    steps: int,
    seed: int,
    history_len: int = 20,
    sessions: int = 3,
    user_features: bool = True,
    belief: dict | None = None,
) -> dict:
    """The click AUC of a filter that knows everything about the world except the user.

    The filter is `recsim_env.policies.belief.WorldFilter` (docs/reference_policies.md): the world's
    equations, its true catalogue and the population's law, and of the user only the observation
    window of `history_len` exposures (the warm-start history included while it is in the window),
    read afresh at every step. Its prediction is the posterior click probability of the shown item.
    The steps are those `world_metrics` scores: uniform recommendations in `sessions`-session episodes
    with user features, `steps` of them with seed `seed`; the world's own probabilities on the same
    steps give `world_truth`. A learned simulator has to learn what this filter is given.

    Ablations: `history_len` sets the window (160 holds a whole 3-session episode of 50-step sessions:
    the filter then reads the whole history); `belief` takes `BeliefConfig` fields, e.g.
    `{"warm_start": False}` reads only what a world log holds, `{"mixture": False}` one Gaussian prior,
    `{"drift": False}`, `{"satiation": False}`, `{"other_signals": False}` (clicks and watch times only).
    """
    from sklearn.metrics import roc_auc_score

    from recsim_env.envs.seqrec import SeqRecVectorEnv
    from recsim_env.policies.belief import BeliefConfig, WorldFilter
    from recsim_env.world import UserWorld

    world = UserWorld()
    world_filter = WorldFilter(world, config=BeliefConfig(**(belief or {})))
    num_envs = 256
    env = SeqRecVectorEnv(
        num_envs=num_envs,
        sessions_per_episode=sessions,
        history_len=history_len,
        user_features=user_features,
    )
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    everyone = np.arange(num_envs)
    just_reset = np.zeros(num_envs, dtype=bool)  # these envs' last step only delivered a new episode
    predicted, true, clicks = [], [], []
    while len(clicks) * num_envs < steps:
        action = rng.integers(0, world.n_items, size=num_envs)
        p_hat = world_filter.predict(world_filter.posterior(obs), action[:, None])[0][:, 0]
        true_p = world.click_probabilities(env.user_state)[everyone, action]
        obs, _, terminated, truncated, info = env.step(action)
        live = ~just_reset
        predicted.append(p_hat[live])
        true.append(true_p[live])
        clicks.append(info["feedback"][live, 0])
        just_reset = terminated | truncated
    predicted, true, clicks = (np.concatenate(x)[:steps] for x in (predicted, true, clicks))
    return {
        "filter": round(float(roc_auc_score(clicks, predicted)), 4),
        "world_truth": round(float(roc_auc_score(clicks, true)), 4),
    }


class MostProbablePolicy:
    """A `recsim_env.policies.Policy` that acts on its most probable item whatever `deterministic` says,
    as `seqrec evaluate RUN` evaluates a saved policy; its distribution is one-hot on that item."""

    def __init__(self, policy) -> None:
        self.policy = policy
        self.name = getattr(policy, "name", type(policy).__name__)
        self.n_items = policy.n_items
        self.slate_size = policy.slate_size

    def seed(self, seed: int | None) -> None:
        self.policy.seed(seed)

    def act(self, obs, deterministic: bool = True):
        return self.policy.act(obs, deterministic=True)

    def action_distribution(self, obs) -> np.ndarray:
        from recsim_env.policies import act_slates, as_batch, one_hot, unbatch_probabilities

        batch, single = as_batch(obs)
        first = act_slates(self.policy, batch, deterministic=True)[:, 0]
        return unbatch_probabilities(one_hot(first, self.n_items), single)


def trained_agents(logs, directory, *, budget: float, seed: int) -> tuple[dict, dict]:
    """`supervised` (on `logs`), `ppo` and `dqn` (SB3, in the default world) trained for `budget` seconds
    each with `seed`, as panel policies, and their training seconds and steps; reused from `directory`."""
    import tempfile

    from agents import load_policy
    from agents.supervised import SupervisedConfig
    from agents.supervised import train as train_supervised
    from agents.training import TrainConfig, train
    from agents.training.config import UNLIMITED_STEPS
    from recsim_env.io import atomic_write

    root = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="fidelity-agents-"))
    panel, seconds = {}, {}
    for name in ("supervised", "ppo", "dqn"):
        run = root / f"{name}-seed{seed}"
        summary = run / "train.json"
        if not summary.exists():
            print(f"training {name} ({budget:.0f} s)", file=sys.stderr, flush=True)
            started = time.perf_counter()
            info = {}
            if name == "supervised":
                policy, _ = train_supervised(
                    SupervisedConfig(seed=seed, time_budget_s=budget, device="cpu"), logs, progress=False
                )
                policy.save(run / "policy")
            else:
                config = TrainConfig(
                    algo=name, stop_timesteps=UNLIMITED_STEPS, time_budget_s=budget, seed=seed
                )
                info["timesteps"] = train(config, run, progress=False).timesteps
            text = json.dumps({"train_s": time.perf_counter() - started, "budget_s": budget, **info})
            atomic_write(summary, lambda tmp, text=text: Path(tmp).write_text(text))
        kept = json.loads(summary.read_text())
        seconds[name] = {"train_s": round(kept["train_s"], 1), "timesteps": kept.get("timesteps")}
        panel[name] = MostProbablePolicy(load_policy(run / "policy" if (run / "policy").is_dir() else run))
    return panel, seconds


def summarise(paths: list[str]) -> dict:
    """Across the JSON lines in `paths` (one run per seed): each panel policy's world and simulated mean
    return, relative error and KS distances averaged over the runs (with their spread), and the per-run
    Spearman correlations."""
    runs = [json.loads(Path(p).read_text().strip().splitlines()[-1]) for p in paths]
    policies = {}
    for name in runs[0]["policy_values"]:
        world = [r["policy_values"][name]["world"] for r in runs]
        entry = {"world": round(float(np.mean(world)), 3)}
        if runs[0]["policy_values"][name]["simulator"] is not None:
            error = [r["relative_error"][name] for r in runs]
            entry |= {
                "simulator": round(float(np.mean([r["policy_values"][name]["simulator"] for r in runs])), 3),
                "relative_error_mean": round(float(np.mean(error)), 4),
                "relative_error_min_max": [min(error), max(error)],
                "session_length_ks_mean": round(
                    float(np.mean([r["session_length_ks"][name] for r in runs])), 4
                ),
                "return_gap_ks_mean": round(float(np.mean([r["return_gap_ks"][name] for r in runs])), 4),
            }
        policies[name] = entry
    return {
        "benchmark": "simulator_fidelity_summary",
        "runs": len(runs),
        "spearman": [r["spearman"] for r in runs],
        "spearman_mean": round(float(np.mean([r["spearman"] for r in runs])), 4),
        "max_abs_relative_error": [r["max_abs_relative_error"] for r in runs],
        "within_5_percent": [r["within_5_percent"] for r in runs],
        "policies": policies,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20,000 logged steps, 3 epochs, 200 episodes")
    parser.add_argument(
        "--steps", type=int, default=None, help="logged world steps to train on (default 200,000)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="most training epochs (default 20)")
    parser.add_argument(
        "--episodes", type=int, default=None, help="rollout episodes per policy (default 1000)"
    )
    parser.add_argument("--out", default=None, help="also save the simulator and its report here")
    parser.add_argument(
        "--simulator", default=None, help="evaluate this saved simulator instead of training one"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 suits a shared CPU; 0 = torch's default)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--agents", default=None, help="keep the panel's trained agents here and reuse those already there"
    )
    parser.add_argument(
        "--agent-seconds",
        type=float,
        default=None,
        help="training budget of each trained panel agent (default 120; --quick 20)",
    )
    parser.add_argument(
        "--no-agents", action="store_true", help="leave supervised, PPO and DQN out of the panel"
    )
    parser.add_argument(
        "--true-item-features",
        action="store_true",
        help="diagnostic: give the simulator the world's true item embeddings and click utilities as item "
        "features (columns of the logs' items table), to see what learning the catalogue costs",
    )
    parser.add_argument(
        "--config",
        type=json.loads,
        default={},
        help="SimulatorConfig fields to override, as JSON (e.g. '{\"history_len\": 50}'); echoed in the output",
    )
    parser.add_argument(
        "--reference-models",
        action="store_true",
        help="instead: click AUC that logistic regressions reach from what the logs show (item, history, user "
        "features), and from the observed history with the catalogue's true embeddings",
    )
    parser.add_argument(
        "--cold-filters",
        action="store_true",
        help="diagnostic: add the filter policies with BeliefConfig(warm_start=False), which do not read the "
        "first observation as the world's warm-start consumption (a simulator's episodes start from logs)",
    )
    parser.add_argument("--panel", default=None, help="evaluate only these panel policies (comma-separated)")
    parser.add_argument(
        "--summarise",
        nargs="+",
        default=None,
        metavar="FILE",
        help="instead: average the policy values of earlier runs' JSON lines (e.g. one file per seed)",
    )
    args = parser.parse_args()
    if args.summarise:
        print(json.dumps(summarise(args.summarise)))
        return
    steps = args.steps or (20_000 if args.quick else 200_000)
    epochs = args.epochs or (3 if args.quick else 20)
    episodes = args.episodes or (200 if args.quick else 1000)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from recsim_env.io import atomic_write
    from recsim_env.policies import LoggedItemStats
    from recsim_env.world import UserWorld
    from recsim_env.world.logging import log_world
    from simulators import SimulatorConfig, fit, load, save, write_report
    from simulators.policy_values import policy_values, world_panel
    from simulators.report import world_metrics

    logs = log_world("uniform", steps=steps, seed=args.seed, progress=False)
    if args.true_item_features:
        from recsim_env.world import UserWorld

        world = UserWorld()
        truth = {
            f"true_embedding_{d}": world.item_embeddings[:, d] for d in range(world.config.embedding_dim)
        }
        logs.items = logs.items.assign(**truth, true_click_utility=world._item_utility)
    if args.reference_models:
        from recsim_env.world import UserWorld

        aucs = reference_click_aucs(logs, UserWorld())
        aucs["observation (with warm-start history) + user features + true item embeddings"] = (
            observation_click_auc(steps // 2, args.seed)
        )
        interest = interest_estimate_click_aucs(steps // 2, args.seed)
        world_filter = world_filter_click_auc(50_000, args.seed + 1)  # world_metrics' steps, L = 20
        for name, kwargs in (
            ("whole_history", {"history_len": 160}),
            ("whole_logged_history", {"history_len": 160, "belief": {"warm_start": False}}),
            ("last_64_exposures", {"history_len": 64}),
            ("without_warm_start", {"belief": {"warm_start": False}}),
            ("one_gaussian_prior", {"belief": {"mixture": False}}),
            ("without_drift", {"belief": {"drift": False}}),
            ("without_satiation", {"belief": {"satiation": False}}),
            ("clicks_and_watch_times_only", {"belief": {"other_signals": False}}),
        ):
            world_filter[name] = world_filter_click_auc(50_000, args.seed + 1, **kwargs)["filter"]
        print(
            json.dumps(
                {
                    "benchmark": "simulator_fidelity_reference",
                    "logged_steps": steps,
                    "click_auc": aucs,
                    "interest_estimated_with_true_embeddings": interest,
                    "world_filter": world_filter,
                }
            )
        )
        return
    if args.simulator:
        result, simulator = None, load(args.simulator, data=logs)
    else:
        result = fit(
            logs,
            SimulatorConfig(**{"epochs": epochs, "seed": args.seed, **args.config}),
            progress=True,
            num_threads=args.threads or None,
        )
        simulator = result.simulator
        if args.out:
            save(simulator, args.out)
    started = time.perf_counter()
    world = world_metrics(simulator, steps=50_000, seed=args.seed + 1)
    world.pop("_samples")
    panel = world_panel(LoggedItemStats.from_logs(logs))
    if args.cold_filters:
        from recsim_env.policies import BeliefConfig, FilterFarsightedPolicy, FilterMyopicPolicy

        cold = BeliefConfig(warm_start=False)
        panel["filter-myopic-nowarm"] = FilterMyopicPolicy(UserWorld(), belief=cold)
        panel["filter-farsighted-nowarm"] = FilterFarsightedPolicy(UserWorld(), belief=cold)
    agent_seconds = {}
    if not args.no_agents:
        budget = args.agent_seconds or (20.0 if args.quick else 120.0)
        agents, agent_seconds = trained_agents(logs, args.agents, budget=budget, seed=args.seed)
        panel.update(agents)
    if args.panel:
        chosen = args.panel.split(",")
        unknown = sorted(set(chosen) - set(panel))
        if unknown:
            raise SystemExit(f"--panel: unknown policies {unknown}; the panel has {list(panel)}")
        panel = {name: panel[name] for name in chosen}
    eval_started = time.perf_counter()
    values = policy_values(
        simulator,
        panel,
        episodes=episodes,
        seed=args.seed + 2,
        item_category=UserWorld().item_category,
        logged_items=np.bincount(logs.frame["item_id"].to_numpy(), minlength=simulator.n_items),
        on_policy=lambda name: print(f"rolling out {name}", file=sys.stderr, flush=True),
    )
    table = values["policies"]
    ranking = {
        where: sorted(values["compared"], key=lambda n: table[n][where]["mean_return"], reverse=True)
        for where in ("world", "simulator")
    }
    if args.out:
        from simulators.report_markdown import policy_values_markdown

        if result is not None:
            write_report(result, args.out, world="default", seed=args.seed)
        text = "\n".join(policy_values_markdown(values)) + "\n"
        atomic_write(Path(args.out) / "policy_values.md", lambda tmp: Path(tmp).write_text(text))
    print(
        json.dumps(
            {
                "benchmark": "simulator_fidelity",
                "config": args.config,
                "true_item_features": args.true_item_features,
                "logged_steps": steps,
                "train_seconds": round(result.seconds, 1) if result else None,
                "epochs_run": len(result.history) if result else None,
                # The early-stopping metric (validation users' click loss by default): compare settings on it.
                "best_valid_loss": round(min(h["valid_loss"] for h in result.history), 5) if result else None,
                "click_auc_learned": round(world["learned"]["auc"], 4),
                "click_auc_world_truth": round(world["world_truth"]["auc"], 4),
                "click_auc_gap": round(world["auc_gap"], 4),
                "click_ece_learned": round(world["learned"]["ece"], 4),
                "click_ece_against_true_p": round(world["ece_against_true_probability"], 4),
                "click_rmse_to_true_p": round(world["rmse_to_true_probability"], 4),
                # The same steps scored from the history world logs hold (no warm start; see world_metrics).
                "logged_history": {
                    "click_auc_learned": round(world["logged_history"]["learned"]["auc"], 4),
                    "click_auc_gap": round(world["logged_history"]["auc_gap"], 4),
                    "click_ece_learned": round(world["logged_history"]["learned"]["ece"], 4),
                    "click_ece_against_true_p": round(
                        world["logged_history"]["ece_against_true_probability"], 4
                    ),
                },
                "episodes": episodes,
                "policy_values": {
                    name: {
                        "world": round(e["world"]["mean_return"], 3),
                        "simulator": None
                        if e["simulator"] is None
                        else round(e["simulator"]["mean_return"], 3),
                    }
                    for name, e in table.items()
                },
                "spearman": round(values["spearman"], 4),
                "max_abs_relative_error": round(values["max_abs_relative_error"], 4),
                "within_5_percent": sum(abs(table[n]["relative_error"]) <= 0.05 for n in values["compared"]),
                "compared": len(values["compared"]),
                "relative_error": {n: round(table[n]["relative_error"], 4) for n in values["compared"]},
                "session_length_ks": {n: round(table[n]["session_length_ks"], 4) for n in values["compared"]},
                "return_gap_ks": {n: round(table[n]["return_gap_ks"], 4) for n in values["compared"]},
                "session_length": {
                    n: [round(table[n][w]["session_length"], 2) for w in ("world", "simulator")]
                    for n in values["compared"]
                },
                "return_gap_days": {
                    n: [round(table[n][w]["return_gap_days"], 3) for w in ("world", "simulator")]
                    for n in values["compared"]
                },
                "world_ci95": {n: [round(x, 2) for x in e["world"]["ci95"]] for n, e in table.items()},
                "item_kl_to_logs": {n: round(e["item_kl_to_logs"], 3) for n, e in table.items()},
                "category_repeat_rate": {n: round(e["category_repeat_rate"], 3) for n, e in table.items()},
                "ranking": ranking,
                "ranking_preserved": ranking["world"] == ranking["simulator"],
                "agent_training": agent_seconds,
                "eval_seconds": round(time.perf_counter() - started, 1),
                "panel_seconds": round(time.perf_counter() - eval_started, 1),
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                "numpy": np.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
