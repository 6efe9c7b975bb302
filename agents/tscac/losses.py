"""TSCAC's pure objective pieces: stage two's closed-form weights (TSCAC eq. 8), the AWR / PG actor
weights, and the constraint thresholds c_i of the constrained MDP."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from agents.tscac.config import AUX, AUX_SIGN, AUX_SIGNALS, TSCACConfig


def constraint_thresholds(behaviour_rates: Mapping[str, float], tolerance: float) -> dict[str, float]:
    """Per-step rate each auxiliary signal must keep: behaviour x (1 - tol), x (1 + tol) for hate (a ceiling)."""
    return {
        name: behaviour_rates[name] * (1.0 - sign * tolerance)
        for name, sign in zip(AUX_SIGNALS, AUX_SIGN, strict=True)
    }


def constraint_violations(rates: Mapping[str, float], thresholds: Mapping[str, float]) -> list[str]:
    """The auxiliary signals whose rate breaks its threshold (below it, or above it for hate)."""
    return [
        name
        for name, sign in zip(AUX_SIGNALS, AUX_SIGN, strict=True)
        if sign * (rates[name] - thresholds[name]) < 0
    ]


def stage_two_log_weights(
    aux_log_probs: torch.Tensor,
    main_advantage: torch.Tensor,
    log_propensity: torch.Tensor,
    lambdas: Sequence[float],
) -> torch.Tensor:
    """[B] log of the unnormalised stage-two weight of each logged (s, a) (TSCAC eq. 8 over pi_b):

    log w = sum_i (lambda_i / Lambda) log pi_i(a|s) + A_1(s, a) / Lambda - log pi_b(a|s),  Lambda = sum_i lambda_i

    Args:
        aux_log_probs: [B, m] log pi_i(a|s) of the stage-one actors at the logged action.
        main_advantage: [B] A_1(s, a) of the main critic.
        log_propensity: [B] log pi_b(a|s).
        lambdas: m positive lambda_i.
    """
    lam = torch.as_tensor(lambdas, dtype=aux_log_probs.dtype, device=aux_log_probs.device)
    total = lam.sum()
    return aux_log_probs @ (lam / total) + main_advantage / total - log_propensity


def stage_two_weights(aux_log_probs, main_advantage, log_propensity, lambdas) -> torch.Tensor:
    """[B] stage-two weights self-normalised over the batch (they sum to 1): softmax of the log weights."""
    return torch.softmax(stage_two_log_weights(aux_log_probs, main_advantage, log_propensity, lambdas), 0)


def awr_weights(advantage: torch.Tensor, temperature: float, max_weight: float) -> torch.Tensor:
    """[B] min(exp(A / beta), w_max) (advantage-weighted regression, Peng et al. 2019)."""
    return torch.exp(advantage / temperature).clamp(max=max_weight)


def signed_aux(advantage: np.ndarray) -> np.ndarray:
    """[T, m] auxiliary advantages, hate with a negative sign (every constraint reads 'keep it high')."""
    return advantage[:, AUX] * AUX_SIGN


def _actor_step_weights(config: TSCACConfig, advantage: torch.Tensor) -> torch.Tensor:
    """Mean-normalised per-sample weights of an AWR (or PG) actor step on advantage [B] (or [B, H])."""
    if config.actor_objective == "pg":
        return advantage / len(advantage)
    return awr_weights(advantage, config.awr_temperature, config.max_weight) / len(advantage)
