"""Fidelity report of a learned simulator: how well it predicts held-out logs (and the world's truth).

On held-out users' logs, teacher-forced (the real history, the real next exposure):
AUC / log-loss / expected calibration error (ECE, 15 equal-width bins) of every binary signal
(the marginal `P(s) = P(click) P(s | click) + (1 - P(click)) P(s | no click)` for signals other
than click) and of leaving; RMSE of every continuous signal on consumed items. Free-running: the
Kolmogorov-Smirnov distance between the session lengths and return gaps the simulator produces
(shown items drawn from the logged exposure frequencies, i.e. the logging policy's marginal) and
the logged ones (`simulators.report_sessions`). On the ground-truth world (when given): the learned
click probability against the world's true one for a uniform policy, with AUC of both against the
realised clicks; with a policy panel, each policy's mean return in the world and in the simulator
(`simulators.policy_values`). The markdown and the plots are `simulators.report_markdown`'s.

A simulator with an interest filter scores held-out exposures as it runs and trains: its filter has read
the user's whole preceding sequence, its encoder the window. Its clicks are scored once more with the
filter started at the window (`click, filter over the window only`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import log_loss, roc_auc_score

from recsim_env.io import atomic_write
from recsim_env.rollout import StepObserver, VectorStep, run_episodes
from simulators import report_markdown
from simulators.data import ExposureLog, model_inputs, windows
from simulators.ensemble import EnsembleSimulator
from simulators.report_markdown import N_BINS
from simulators.report_sessions import session_metrics
from simulators.simulator import LearnedSimulator

WINDOW_CLICK = "click, filter over the window only"
"""The held-out metrics' key for a filter simulator's clicks scored with its filter started at the window."""


def expected_calibration_error(p: np.ndarray, y: np.ndarray, n_bins: int = N_BINS) -> float:
    """sum_b (n_b / n) |mean(y_b) - mean(p_b)| over equal-width probability bins."""
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, y, n_bins) - np.bincount(bins, p, n_bins))
    return float(gap.sum() / max(count.sum(), 1))


def binary_metrics(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """AUC (NaN with one class), log-loss and ECE of probabilities `p` for 0/1 outcomes `y`."""
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    auc = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")
    return {
        "auc": auc,
        "log_loss": float(log_loss(y, p, labels=[0, 1])) if len(y) else float("nan"),
        "ece": expected_calibration_error(p, y),
        "mean_predicted": float(p.mean()) if len(p) else float("nan"),
        "mean_observed": float(y.mean()) if len(y) else float("nan"),
        "n": int(len(y)),
    }


def teacher_forced(
    simulator: LearnedSimulator | EnsembleSimulator,
    log: ExposureLog,
    batch_size: int = 2048,
    carried: bool = True,
) -> dict[str, Any]:
    """Predictions for every exposure of `log` that has history, from the real preceding history.

    A simulator with an interest filter scores as it runs (and trains): the filter's state has read the
    user's whole preceding sequence, the encoder the window. `carried=False` starts the filter at the
    window instead."""
    schema = simulator.schema
    length = simulator.history_len
    w = windows(log, schema, length, simulator.config.window_stride)
    mask = w.target_mask()
    scales = np.asarray(schema.scales, dtype=np.float32)
    starts = [m.window_filter_starts(log, w, scales) if carried else None for m in simulator.members]
    parts: dict[str, list] = {k: [] for k in ("click", "binary", "mean", "leave", "gap_mean")}
    for start in range(0, len(w.items), batch_size):
        sl = slice(start, start + batch_size)
        items, inputs, features = w.items[sl], w.inputs[sl], torch.from_numpy(w.user_features[sl])
        # Every position t of the window, with its own left-padded history (causal: same as the
        # encoder's hidden state at t), scores exposure t + 1.
        outs = []
        for k, member in enumerate(simulator.members):
            filter_start = None if starts[k] is None else starts[k].take(sl)
            with torch.inference_mode():
                hidden = member.states(
                    torch.from_numpy(items[:, :-1]), torch.from_numpy(inputs[:, :-1]), features, filter_start
                )
                out = member.calibrated(member.heads(hidden, torch.from_numpy(items[:, 1:, None])))
            outs.append(out)
        parts["click"].append(torch.stack([torch.sigmoid(o.click[..., 0]) for o in outs]).mean(0).numpy())
        parts["binary"].append(
            torch.stack([torch.sigmoid(o.binary[..., 0, :, :]) for o in outs]).mean(0).numpy()
        )
        parts["mean"].append(torch.stack([o.mean[..., 0, :] for o in outs]).mean(0).numpy())
        parts["leave"].append(torch.stack([torch.sigmoid(o.leave[..., 0, :]) for o in outs]).mean(0).numpy())
        parts["gap_mean"].append(torch.stack([o.gap_mean[..., 0] for o in outs]).mean(0).numpy())
    pred = {k: np.concatenate(v)[mask] for k, v in parts.items()}
    target = w.feedback[:, 1:][mask]
    return {
        "pred": pred,
        "feedback": target,
        "leave": w.leave[:, 1:][mask],
        "leave_known": w.leave_known[:, 1:][mask],
        "log_gap": w.log_gap[:, 1:][mask],
        "log_gap_known": w.log_gap_known[:, 1:][mask],
    }


def log_metrics(simulator: LearnedSimulator | EnsembleSimulator, log: ExposureLog) -> dict[str, Any]:
    """Held-out log metrics per signal (see the module docstring)."""
    schema = simulator.schema
    tf = teacher_forced(simulator, log)
    p_click = tf["pred"]["click"]
    clicked = tf["feedback"][:, 0]
    metrics: dict[str, Any] = {"click": binary_metrics(p_click, clicked)}
    if simulator.members[0].interest_filter is not None:
        # How much the history before the window is worth: the filter read over the window alone.
        windowed = teacher_forced(simulator, log, carried=False)["pred"]["click"]
        metrics[WINDOW_CLICK] = binary_metrics(windowed, clicked)
    for j, name in enumerate(schema.other_binary):
        cond = tf["pred"]["binary"][:, j]  # [M, 2] given no click / click
        marginal = p_click * cond[:, 1] + (1 - p_click) * cond[:, 0]
        metrics[name] = binary_metrics(marginal, tf["feedback"][:, schema.signals.index(name)])
    scales = np.asarray(schema.scales)
    consumed = clicked > 0
    for j, name in enumerate(schema.continuous):
        col = schema.signals.index(name)
        predicted = tf["pred"]["mean"][consumed, j] * scales[col]
        actual = tf["feedback"][consumed, col]
        metrics[name] = {
            "rmse": float(np.sqrt(np.mean((predicted - actual) ** 2))) if consumed.any() else float("nan"),
            "rmse_of_mean_baseline": float(actual.std()) if consumed.any() else float("nan"),
            "n": int(consumed.sum()),
        }
    known = tf["leave_known"]
    leave_p = np.where(consumed, tf["pred"]["leave"][:, 1], tf["pred"]["leave"][:, 0])
    metrics["leave"] = binary_metrics(leave_p[known], tf["leave"][known])
    has_gap = tf["log_gap_known"]
    if has_gap.any():
        metrics["return_gap_log_days"] = {
            "rmse": float(np.sqrt(np.mean((tf["pred"]["gap_mean"][has_gap] - tf["log_gap"][has_gap]) ** 2))),
            "n": int(has_gap.sum()),
        }
    return metrics


class _Recorder:
    """A `UserModel` that forwards to another and keeps the last `Response.info` (truth for analysis)."""

    def __init__(self, model) -> None:
        self.model = model
        self.last_info: dict = {}
        for name in ("signals", "binary_signals", "negative_signals", "n_items", "n_users", "n_user_features",
                     "n_start_uniforms", "n_step_uniforms"):  # fmt: skip
            setattr(self, name, getattr(model, name))

    def initial_state(self, user_ids, uniforms):
        return self.model.initial_state(user_ids, uniforms)

    def respond(self, state, slates, uniforms):
        response = self.model.respond(state, slates, uniforms)
        self.last_info = response.info
        return response

    def end_session(self, state, mask, uniforms):
        return self.model.end_session(state, mask, uniforms)


def world_metrics(
    simulator: LearnedSimulator | EnsembleSimulator, world_config=None, *, steps: int, seed: int
) -> dict:
    """Learned vs true click probabilities for a uniform policy in the world (teacher-forced histories).

    Logged users are followed for 3 sessions, as `log_world` logs them, and each shown item is scored twice
    from two views of the same history: the env observation, whose history starts with the world's
    10-item warm-start consumption (items the user had consumed before the episode), and the history
    that world *logs* hold, which starts at the episode's first shown item (the warm start is never
    logged, so it is what the simulator trained on). The top-level metrics use the observation; the
    `logged_history` entry the logged view, the acceptance's "held-out world logs". A simulator with an
    interest filter is scored as it runs: its filter state is carried over the whole episode (and, in the
    observation view, the warm start), not read afresh from the window.
    """
    from recsim_env.envs.seqrec import SeqRecVectorEnv
    from recsim_env.world import UserWorld

    world = UserWorld(world_config)
    if tuple(world.signals) != simulator.schema.signals or world.n_items != simulator.n_items:
        raise ValueError(
            "world_metrics: the simulator was not trained on logs of this world (signals or catalogue differ)"
        )
    spec = simulator.schema.user_features
    world_columns = tuple(f"feature_{j}" for j in range(world.n_user_features))  # as `log_world` names them
    if spec.width and (spec.categorical or tuple(c for c, _, _ in spec.numeric) != world_columns):
        raise ValueError(
            f"world_metrics: the simulator's user features {spec.names} are not the world's {world_columns}"
        )
    if steps < 1:
        raise ValueError(f"world_metrics: argument 'steps' must be positive, got {steps}")
    recorder = _Recorder(world)
    num_envs = 256
    length = simulator.history_len
    env = SeqRecVectorEnv(
        num_envs=num_envs,
        user_model=recorder,
        sessions_per_episode=3,
        history_len=length,
        user_features=bool(spec.width),
    )
    scorer = _WorldScorer(simulator, recorder, num_envs, np.random.default_rng(seed))
    run_episodes(env, act=scorer.act, observer=scorer, seed=seed, n_vector_steps=-(-steps // num_envs))
    learned, learned_logged, true, clicks = (
        np.concatenate(x)[:steps] for x in (scorer.learned, scorer.learned_logged, scorer.true, scorer.clicks)
    )
    truth = binary_metrics(true, clicks)

    def compare(p: np.ndarray) -> dict:
        metrics = binary_metrics(p, clicks)
        return {
            "learned": metrics,
            "rmse_to_true_probability": float(np.sqrt(np.mean((p - true) ** 2))),
            "ece_against_true_probability": expected_calibration_error(p, true),
            "auc_gap": float(truth["auc"] - metrics["auc"]),
        }

    return {
        **compare(learned),
        "world_truth": truth,
        "logged_history": compare(learned_logged),
        "_samples": {"learned": learned, "true": true, "clicks": clicks},
    }


class _WorldScorer(StepObserver):
    """`world_metrics`' policy and observer: a uniform item per user, scored by the simulator from both
    views of the observed history before the step, kept with the world's truth for the live steps."""

    def __init__(self, simulator, recorder: _Recorder, num_envs: int, rng: np.random.Generator) -> None:
        self.simulator, self.recorder, self.rng = simulator, recorder, rng
        self.spec = simulator.schema.user_features
        length = simulator.history_len
        self.scales = np.asarray(simulator.schema.scales, dtype=np.float32)
        self.gaps = np.zeros((num_envs, length), dtype=np.float32)
        self.pending = np.zeros(num_envs, dtype=np.float32)
        self.just_reset = np.zeros(num_envs, dtype=bool)  # ended last step: this step brings a new episode
        self.new_episode = np.ones(num_envs, dtype=bool)  # this observation is an episode's first
        self.steps_taken = np.zeros(
            num_envs, dtype=np.int64
        )  # this episode's shown items: its logged history
        self.positions = np.arange(length)[None, :]
        self.carry = simulator.members[0].interest_filter is not None
        self.beliefs = self.beliefs_logged = None
        self.learned, self.learned_logged, self.true, self.clicks = [], [], [], []

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        simulator, spec, n_items = self.simulator, self.spec, self.simulator.n_items
        actions = self.rng.integers(0, n_items, size=len(self.gaps))
        items = obs["item_ids"]
        inputs = model_inputs(obs["feedback"], self.gaps, self.scales) * (items < n_items)[..., None]
        logged = self.positions >= simulator.history_len - self.steps_taken[:, None]  # [N, L] a log's part
        features = spec.encode_numeric(obs["user_features"]) if spec.width else None
        if self.carry:  # score as a running simulator does: its filter has read the whole history
            self.beliefs, self.beliefs_logged = _carry_beliefs(
                simulator,
                self.beliefs,
                self.beliefs_logged,
                items,
                inputs,
                features,
                fresh=self.new_episode | self.just_reset,  # (a step whose predictions are not kept too)
            )
        self.predicted = simulator.predict(
            items, inputs, actions[:, None], user_features=features, beliefs=self.beliefs
        )["click"][:, 0]
        self.predicted_logged = simulator.predict(
            np.where(logged, items, n_items),
            inputs * logged[..., None],
            actions[:, None],
            user_features=features,
            beliefs=self.beliefs_logged,
        )["click"][:, 0]
        return actions

    def on_step(self, step: VectorStep) -> None:
        live, info = step.live, step.info
        self.learned.append(self.predicted[live])
        self.learned_logged.append(self.predicted_logged[live])
        self.true.append(self.recorder.last_info["choice_probability"][live, 0])
        self.clicks.append(info["feedback"][live, 0])
        # The history's gap feature: the exposure after a session end carries the return gap.
        self.gaps = np.concatenate([self.gaps[:, 1:], self.pending[:, None]], axis=1)
        self.pending = np.zeros(len(live), dtype=np.float32)
        if "_return_gap" in info:
            self.pending = np.where(info["_return_gap"], info["return_gap"], 0.0).astype(np.float32)
        done = step.done
        self.gaps[done] = 0.0
        self.pending[done] = 0.0
        self.steps_taken = np.where(done, 0, self.steps_taken + live)
        self.new_episode = self.just_reset
        self.just_reset = done


@torch.inference_mode()
def _carry_beliefs(simulator, beliefs, beliefs_logged, items, inputs, features, *, fresh):
    """Each member's filter state `[N, M, W]` for the observed and the logged view of the histories `items`
    [N, L]: for `fresh` rows (a new episode) read from the observation's history (the world's warm start)
    and the prior (a log holds nothing yet); for the others advanced over the newest exposure."""
    n = len(items)
    features = None if features is None else torch.from_numpy(np.asarray(features, np.float32))
    if beliefs is None:
        width = simulator.members[0].interest_filter.state_width
        beliefs = np.zeros((n, len(simulator.members), width), np.float32)
        beliefs_logged = np.zeros_like(beliefs)
    new, old = np.flatnonzero(fresh), np.flatnonzero(~fresh)
    for k, member in enumerate(simulator.members):
        if len(new):
            part = None if features is None else features[new]
            beliefs[new, k] = member.filter_state(
                torch.from_numpy(items[new]), torch.from_numpy(inputs[new]), part
            ).numpy()
            beliefs_logged[new, k] = member.interest_filter.initial(len(new), part).numpy()
        if len(old):
            newest_item, newest = torch.from_numpy(items[old, -1:]), torch.from_numpy(inputs[old, -1:])
            for view in (beliefs, beliefs_logged):
                view[old, k] = member.advance_filter(
                    torch.from_numpy(view[old, k]), newest_item, newest
                ).numpy()
    return beliefs, beliefs_logged


def write_report(
    result,
    directory: str | os.PathLike,
    *,
    world: Any = None,
    plots: bool = True,
    episodes: int = 512,
    world_steps: int = 50_000,
    seed: int = 0,
    panel: Mapping[str, Any] | None = None,
    panel_episodes: int = 1000,
) -> dict:
    """Compute the fidelity metrics of `result` (a `FitResult`, or `(simulator, held-out log)`) and write
    `fidelity.json`, `fidelity.md` and (with `plots`) PNG plots into `directory`.

    `world`: a `WorldConfig`, `"default"` for the embedded world, or None to skip the world section.
    `panel`: name -> policy, whose mean returns in the world and in the simulator make the policy-value
    section (`simulators.policy_values.policy_values`, `panel_episodes` episodes each, seed `seed`; the
    policies' distance from the logs is measured against the held-out logs' items). Needs `world`.
    """
    if panel is not None and world is None:
        raise ValueError("write_report: a policy panel needs the world (argument 'world') to compare against")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(result, tuple):
        simulator, test_log = result
    else:
        simulator, test_log = result.simulator, result.log.select(result.test_users)
    metrics: dict[str, Any] = {
        "simulator": {
            "repr": repr(simulator),
            "test_users": int(test_log.n_users),
            "test_exposures": int(len(test_log.items)),
        },
        "logs": log_metrics(simulator, test_log),
    }
    sessions = session_metrics(simulator, test_log, episodes=episodes, seed=seed)
    samples = {"sessions": sessions.pop("_samples")}
    metrics["sessions"] = sessions
    tf = teacher_forced(simulator, test_log)
    samples["calibration"] = {"held-out logs": (tf["pred"]["click"], tf["feedback"][:, 0])}
    if world is not None:
        world_config = None if isinstance(world, str) else world
        w = world_metrics(simulator, world_config, steps=world_steps, seed=seed)
        s = w.pop("_samples")
        samples["calibration"]["world (vs true p)"] = (s["learned"], s["true"])
        metrics["world"] = w
    if panel is not None:
        from recsim_env.world import UserWorld
        from simulators.policy_values import policy_values

        metrics["policy_values"] = policy_values(
            simulator,
            panel,
            episodes=panel_episodes,
            seed=seed,
            world_config=world_config,
            item_category=UserWorld(world_config).item_category,
            logged_items=np.bincount(test_log.items, minlength=simulator.n_items),
        )
    names = report_markdown.plots(directory, metrics, samples) if plots else []
    text = json.dumps(metrics, indent=2, default=float) + "\n"
    atomic_write(directory / "fidelity.json", lambda tmp: Path(tmp).write_text(text))
    text = report_markdown.markdown(metrics, names)
    atomic_write(directory / "fidelity.md", lambda tmp: Path(tmp).write_text(text))
    return metrics
