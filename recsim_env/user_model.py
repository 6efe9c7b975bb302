"""The `UserModel` contract: what an environment needs from "the user".

The ground-truth world implements it in numpy; learned simulators implement it with torch. Every
method is batched over users (`N`), so the single environment is the vector environment with N = 1
and the dynamics exist once.

Randomness never lives inside a user model. The environment draws, for each episode, a block of
uniform random numbers from its own `np_random` and hands the model the row for the current step.
That makes a user model a deterministic function of (state, action, uniforms): N single environments
and one vector environment seeded alike produce the same trajectories, with no Python loop over
users inside a step.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np


class StartOfEpisode(NamedTuple):
    """What `UserModel.initial_state` returns for a batch of users."""

    state: Any
    """The model's own batched state (opaque to the environment)."""
    history_items: np.ndarray
    """[N, H] int64 items the user consumed before the episode (most recent last; pad id = n_items)."""
    history_feedback: np.ndarray
    """[N, H, F] float32 feedback for those items, in `signals` order."""
    user_features: np.ndarray
    """[N, U] float32 observable user features (U may be 0)."""


class Response(NamedTuple):
    """One step of user behaviour for a batch of N users shown slates of K items."""

    feedback: np.ndarray
    """[N, K, F] float32 feedback per slate position, in `signals` order."""
    chosen_position: np.ndarray
    """[N] int64 position the user consumed, -1 for none."""
    leave: np.ndarray
    """[N] bool: the user ends the session after this step."""
    info: dict[str, np.ndarray]
    """Extra per-user diagnostics (e.g. `click_probability` [N, K]); never observed by agents."""


@runtime_checkable
class UserModel(Protocol):
    """A batched model of users: start them, let them respond to slates, end their sessions."""

    signals: tuple[str, ...]
    """Names of the feedback signals, e.g. ("click", "watch_time", "like", ...)."""
    binary_signals: frozenset[str]
    """The signals that are 0/1 events (the rest are continuous)."""
    negative_signals: frozenset[str]
    """The signals a user expresses displeasure with (e.g. "hate"); they count as costs."""
    n_items: int
    n_users: int
    n_user_features: int
    n_start_uniforms: int
    """Uniform random numbers `initial_state` consumes per user."""
    n_step_uniforms: int
    """Uniform random numbers `respond` and `end_session` consume per user and step."""

    def initial_state(self, user_ids: np.ndarray, uniforms: np.ndarray) -> StartOfEpisode:
        """Start users `user_ids` [N] with `uniforms` [N, n_start_uniforms]."""
        ...

    def respond(self, state: Any, slates: np.ndarray, uniforms: np.ndarray) -> Response:
        """Show `slates` [N, K] to the users; updates `state` in place; `uniforms` is [N, n_step_uniforms]."""
        ...

    def end_session(self, state: Any, mask: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
        """End the sessions of users where `mask` [N] is true; returns the return gap in days [N] (0 elsewhere).

        Updates `state` in place for the time that passes until the next session.
        """
        ...


class PreparedStart(Protocol):
    """A start of users in parts, from a model's optional `prepare_start(user_ids, uniforms)` (same
    arguments and result as `initial_state`): `compute()` does the costly part and may run on another
    thread while `respond` and `end_session` run on other users (it neither reads what they write
    nor writes what they read, and should release the GIL for most of its time); `finish()`, on the
    stepping thread after it, returns the `StartOfEpisode`. The vector env then starts the users it
    resets while it steps the others."""

    def compute(self) -> None: ...

    def finish(self) -> StartOfEpisode: ...


def starts_concurrently(model: UserModel) -> bool:
    """Whether `model` offers `prepare_start` (a `PreparedStart`) and says that it pays: a bool
    `concurrent_start` attribute, True when `compute()` is costly and releases the GIL (a start that
    holds the GIL, or is cheap, is faster on the stepping thread)."""
    return (
        callable(getattr(model, "prepare_start", None)) and getattr(model, "concurrent_start", False) is True
    )


USER_MODEL_SOURCES = "recsim_env.user_models"
"""Entry-point group of user-model sources: packages above this one (`simulators`) register here how
an environment gets its users from logs, so `recsim_env` never imports them (see pyproject.toml)."""


def user_model_source(name: str):
    """The user-model source registered as `name` (e.g. "learned": users learned from logs).

    A source is called with the environment's keyword arguments for it and returns
    `(user_model, reward)`. Raises `ModuleNotFoundError` naming the group when none is installed.
    """
    from importlib.metadata import entry_points

    found = [point for point in entry_points(group=USER_MODEL_SOURCES) if point.name == name]
    if not found:
        raise ModuleNotFoundError(
            f"no user-model source {name!r} is installed (entry-point group {USER_MODEL_SOURCES!r}); "
            "the `simulators` package of recsim-env provides 'learned'"
        )
    return found[0].load()
