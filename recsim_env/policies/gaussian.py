"""Gaussian belief updates shared by the world filter: a flattened Gaussian mixture and its steps.

Each step conditions Gaussian beliefs on one observation and returns the new moments with the log
predictive probability of the observation (the update of a mixture component's weight):
- `gaussian_step`: a Kalman step on `y = <a, u> + N(0, noise)`;
- `choice_step`: a Laplace step on a multinomial-logit choice among K options and none;
- `scalar_gaussian_step`, `scalar_bernoulli_step`: the same on a one-dimensional marginal `z = <u, e>`,
  for laws that depend on u through z alone (mapped back by the caller in one rank-one step).
"""

from __future__ import annotations

import numpy as np

PRUNE_LOG_RATIO = 7.0
"""Mixture components under exp(-7) ~ 1e-3 of their user's best are dropped."""


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, without overflow warnings for large |x|."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def user_starts(owner: np.ndarray) -> np.ndarray:
    """Index of each user's first component in `owner` (sorted, every user present)."""
    return np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])


def sum_per_user(owner: np.ndarray, values: np.ndarray) -> np.ndarray:
    """[N, ...] the sum of `values` [A, ...] over each user's components."""
    return np.add.reduceat(values, user_starts(owner), axis=0)


class Mixture:
    """The Gaussian components of N users' beliefs, flattened: component a (of A) belongs to user
    `owner[a]`, sorted by user, with log weight `log_weight[a]`, mean `mean[a]` [D] and covariance
    `cov[a]` [D, D]. `prune` drops the components whose weight is under `exp(-PRUNE_LOG_RATIO)` of their
    user's best, so a user whose favourite category is settled costs one component."""

    def __init__(self, owner: np.ndarray, log_weight: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> None:
        self.owner, self.log_weight, self.mean, self.cov = owner, log_weight, mean, cov

    def update(self, idx: np.ndarray, mean: np.ndarray, cov: np.ndarray, log_evidence: np.ndarray) -> None:
        """Components `idx` take new moments; their log weights add the observation's log evidence."""
        self.mean[idx], self.cov[idx] = mean, cov
        self.log_weight[idx] += log_evidence

    def _best(self) -> np.ndarray:
        """[A] the largest log weight among each component's user's components."""
        starts = user_starts(self.owner)
        best = np.maximum.reduceat(self.log_weight, starts)
        return np.repeat(best, np.diff(np.r_[starts, len(self.owner)]))

    def prune(self) -> None:
        keep = self.log_weight >= self._best() - PRUNE_LOG_RATIO
        if not keep.all():
            self.owner, self.log_weight = self.owner[keep], self.log_weight[keep]
            self.mean, self.cov = self.mean[keep], self.cov[keep]

    def weights(self) -> np.ndarray:
        """[A] the normalised weights (they sum to 1 over each user's components)."""
        w = np.exp(self.log_weight - self._best())
        return w / np.repeat(sum_per_user(self.owner, w), np.diff(np.r_[user_starts(self.owner), len(w)]))


def symmetrize(cov: np.ndarray) -> None:
    """Make [..., D, D] covariances exactly symmetric (in place) after updates that round unevenly."""
    cov += np.swapaxes(cov, -1, -2)
    cov *= 0.5


def gaussian_step(mean, cov, a, target, noise):
    """Kalman step on `target = <a, u> + N(0, noise)`; a [A, D]. Returns the new mean and covariance and
    the [A] log predictive density."""
    pa = (cov @ a[..., None])[..., 0]
    s = (pa * a).sum(axis=1) + noise
    residual = target - (mean * a).sum(axis=1)
    gain = pa / s[:, None]
    new_cov = cov - gain[:, :, None] * pa[:, None, :]
    return mean + gain * residual[:, None], new_cov, -0.5 * (residual**2 / s + np.log(2 * np.pi * s))


def choice_step(mean, cov, a, offset, log_theta, chosen):
    """Laplace step on a multinomial-logit choice among K options and none (a slate).

    Option k has utility `<a_k, u> + offset_k + log theta_k`, the no-choice option 0; `a` [A, K, D],
    `offset` [A, K], `chosen` [A, K] bool (one-hot, or all False: none chosen). One Newton step at the
    mean: `P' = P - P A^T (I + W A P A^T)^-1 W A P` with `W = diag(p) - p p^T`, `m' = m + P' A^T (y - p)`.
    Returns the new mean and covariance and the [A] log predictive probability of the outcome, with the
    utilities scaled by `1 / sqrt(1 + pi v_k / 8)` (the probit approximation; `v_k = a_k^T P a_k`).
    """
    y = chosen.astype(np.float64)
    x = np.einsum("ad,akd->ak", mean, a) + offset
    pa = a @ cov  # rows (P a_k)^T: [A, K, D]
    apa = pa @ np.swapaxes(a, 1, 2)  # [A, K, K]
    variance = np.einsum("akk->ak", apa)
    scaled = x / np.sqrt(1.0 + np.pi * np.maximum(variance, 0.0) / 8.0) + log_theta
    log_norm = np.logaddexp.reduce(np.concatenate([np.zeros((len(x), 1)), scaled], axis=1), axis=1)
    log_evidence = (y * scaled).sum(axis=1) - log_norm
    utility = x + log_theta
    log_norm = np.logaddexp.reduce(np.concatenate([np.zeros((len(x), 1)), utility], axis=1), axis=1)
    p = np.exp(utility - log_norm[:, None])
    k = a.shape[1]
    w = p[:, :, None] * np.eye(k) - p[:, :, None] * p[:, None, :]
    z = np.linalg.solve(np.eye(k) + w @ apa, w @ pa)  # [A, K, D]
    new_cov = cov - np.swapaxes(pa, 1, 2) @ z
    symmetrize(new_cov)
    grad = ((y - p)[:, :, None] * a).sum(axis=1)
    return mean + (new_cov @ grad[..., None])[..., 0], new_cov, log_evidence


def select_rows(mask, updated, mu, v, log_evidence):
    """Rows `mask` take `updated` (a step's new mean, variance and log evidence), the others keep
    `(mu, v)`; returns the moments and `log_evidence` plus the evidence of the rows that took the step."""
    new_mu, new_v, evidence = updated
    return np.where(mask, new_mu, mu), np.where(mask, new_v, v), log_evidence + np.where(mask, evidence, 0.0)


def scalar_gaussian_step(mu, v, alpha, target, noise):
    """Kalman step of z ~ N(mu, v) on `target = alpha z + N(0, noise)`: the new mean and variance and the
    log predictive density."""
    s = alpha**2 * v + noise
    residual = target - alpha * mu
    gain = alpha * v / s
    return mu + gain * residual, v - gain * alpha * v, -0.5 * (residual**2 / s + np.log(2 * np.pi * s))


def scalar_bernoulli_step(mu, v, alpha, offset, outcome):
    """Laplace step of z ~ N(mu, v) on `outcome ~ Bern(sigmoid(alpha z + offset))`: one Newton step at
    the mean, `v' = v / (1 + W alpha^2 v)` with `W = p (1 - p)`, `mu' = mu + v' alpha (y - p)`; and the log
    predictive probability `log sigmoid(+-x / sqrt(1 + pi alpha^2 v / 8))` (probit approximation)."""
    x = alpha * mu + offset
    p = sigmoid(x)
    new_v = v / (1.0 + p * (1.0 - p) * alpha**2 * v)
    signed = np.where(outcome, 1.0, -1.0) * x / np.sqrt(1.0 + np.pi * alpha**2 * v / 8.0)
    return mu + new_v * alpha * (outcome - p), new_v, -np.logaddexp(0.0, -signed)
