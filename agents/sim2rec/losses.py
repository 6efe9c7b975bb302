"""Sim2Rec's losses (pure functions of tensors).

Losses (PPO, Schulman et al. 2017), per minibatch:
    ratio      = pi(a|s, z) / pi_old(a|s, z)
    L_clip     = -E[min(ratio A, clip(ratio, 1 - eps, 1 + eps) A)]             (PPO eq. 7)
    L_value    = E[(V(s, z) - R)^2] / 2
    L_entropy  = -E[H(pi(.|s, z))]
    L_consist  = E_t ||z_t - mean_t' z_t'||^2  over the steps t' of t's episode (Sim2Rec, optional)
    L = L_clip + vf_coef L_value + ent_coef L_entropy + consistency_coef L_consist
with advantages A from GAE(gamma, lambda) (Schulman et al. 2016, eq. 16). With the native `SeqRec`
vector env (NEXT_STEP autoreset) the step after an episode ends only resets that env; it is masked
out of every expectation above.
"""

from __future__ import annotations

import torch


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x.mean() if mask is None else (x * mask).sum() / mask.sum().clamp_min(1.0)


def _normalise(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return (x - x.mean()) / (x.std() + 1e-8)
    mean = _masked_mean(x, mask)
    std = _masked_mean((x - mean) ** 2, mask).sqrt()
    return (x - mean) / (std + 1e-8)


def _consistency(z: torch.Tensor, segments: torch.Tensor | None, mask: torch.Tensor | None, T: int):
    """L_consist = E_t ||z_t - mean of z over t's episode||^2 for z `[T * n, C]` in (step, env) order.

    `segments` None: each env's T steps are one episode (`lts`); else `[T * n]` episode ids.
    """
    z = z.float()
    if segments is None:
        z = z.reshape(T, -1, z.shape[-1])
        return ((z - z.mean(dim=0, keepdim=True).detach()) ** 2).sum(-1).mean()
    ids = torch.unique(segments, return_inverse=True)[1]
    n_segments = int(ids.max()) + 1
    sums = torch.zeros(n_segments, z.shape[-1], device=z.device).index_add_(0, ids, z * mask[:, None])
    counts = torch.zeros(n_segments, device=z.device).index_add_(0, ids, mask)
    means = (sums / counts.clamp_min(1.0)[:, None]).detach()
    return _masked_mean(((z - means[ids]) ** 2).sum(-1), mask)


@torch.no_grad()
def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    next_value: torch.Tensor,
    next_done: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns `[T, N]` by GAE (Schulman et al. 2016, eq. 16); done at t ends the episode
    at t (the SAME_STEP reset observation, or the NEXT_STEP dummy step that follows, is not bootstrapped
    from). `dones[t]`: the episode ended before step t; `next_value`, `next_done`: after the last step."""
    T, N = rewards.shape
    advantages = torch.zeros_like(rewards)
    last = torch.zeros(N, device=rewards.device)
    for t in reversed(range(T)):
        not_done = 1.0 - (dones[t + 1] if t + 1 < T else next_done)
        following = values[t + 1] if t + 1 < T else next_value
        delta = rewards[t] + gamma * following * not_done - values[t]
        last = delta + gamma * gae_lambda * not_done * last
        advantages[t] = last
    returns = advantages + values
    return advantages, returns


def ppo_losses(
    new_logprob: torch.Tensor,
    old_logprob: torch.Tensor,
    advantages: torch.Tensor,
    new_value: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    mask: torch.Tensor | None,
    clip_coef: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L_clip, L_value, L_entropy) of one minibatch (flat `[B]` tensors; `mask` None: every step counts).
    The advantages are normalised over the minibatch first."""
    mb_adv = _normalise(advantages, mask)
    ratio = (new_logprob - old_logprob).exp()
    policy_loss = _masked_mean(
        torch.max(-mb_adv * ratio, -mb_adv * ratio.clamp(1 - clip_coef, 1 + clip_coef)),
        mask,
    )  # PPO eq. 7
    value_loss = 0.5 * _masked_mean((new_value - returns) ** 2, mask)
    entropy_loss = -_masked_mean(entropy, mask)
    return policy_loss, value_loss, entropy_loss
