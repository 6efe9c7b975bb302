"""Sim2Rec training: PPO across the variant's simulators (see `agents.sim2rec.losses`)."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from agents.sim2rec.config import Sim2RecConfig
from agents.sim2rec.envs import make_vector_env
from agents.sim2rec.losses import _consistency, gae, ppo_losses
from agents.sim2rec.model import network_class
from agents.sim2rec.policy import Sim2RecPolicy
from recsim_env.encoders.trainer import autocast, resolve_device


def _tree(fn: Callable, obs):
    """`fn` applied to a tensor, or to each tensor of a dict of them (Dict observations)."""
    return {key: fn(value) for key, value in obs.items()} if isinstance(obs, dict) else fn(obs)


def train(
    config: Sim2RecConfig,
    *,
    progress: bool = True,
    on_iteration: Callable[[int, dict], None] | None = None,
) -> Sim2RecPolicy:
    """Train with PPO across the variant's simulators; returns the policy. Deterministic on CPU."""
    from tqdm.auto import tqdm

    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    # ---- environments: each episode samples one simulator of the set
    envs = make_vector_env(config)
    # NEXT_STEP autoreset (the native SeqRec vector env): the step after an episode ends only
    # resets that env; it is left out of every loss.
    dummy_steps = envs.metadata.get("autoreset_mode") == gym.vector.AutoresetMode.NEXT_STEP
    n_actions = int(envs.single_action_space.n)
    network = network_class(config).from_space(envs.single_observation_space, n_actions, config).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate, eps=1e-5)
    generator = torch.Generator(device=device).manual_seed(config.seed)

    T, N = config.num_steps, config.num_envs
    next_obs, _ = envs.reset(seed=config.seed)
    next_obs = network.as_input(next_obs, device)[0]
    # ---- rollout storage, shape (steps, envs) + ...
    observations = _tree(lambda x: torch.zeros((T,) + x.shape, dtype=x.dtype, device=device), next_obs)
    actions = torch.zeros((T, N), dtype=torch.long, device=device)
    logprobs = torch.zeros((T, N), device=device)
    rewards = torch.zeros((T, N), device=device)
    dones = torch.zeros((T, N), device=device)
    values = torch.zeros((T, N), device=device)

    next_done = torch.zeros(N, device=device)
    episode_returns: list[float] = []
    running = np.zeros(N)
    bar = tqdm(range(config.iterations), desc=f"sim2rec[{config.variant}]", disable=not progress)
    for iteration in bar:
        for group in optimizer.param_groups:  # linear learning-rate annealing
            group["lr"] = config.learning_rate * (1.0 - iteration / config.iterations)
        # ---- collect experience
        for t in range(T):
            if isinstance(next_obs, dict):
                for key, value in next_obs.items():
                    observations[key][t] = value
            else:
                observations[t] = next_obs
            dones[t] = next_done
            with torch.no_grad(), autocast(device):
                features, _ = network.features(next_obs)
                logits = network.actor(features).float()
                action = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[:, 0]
                logprobs[t] = torch.distributions.Categorical(logits=logits).log_prob(action)
                values[t] = network.critic(features).squeeze(-1).float()
            actions[t] = action
            obs, reward, terminated, truncated, _ = envs.step(action.cpu().numpy())
            running += reward
            done = terminated | truncated
            episode_returns.extend(running[done].tolist())
            running[done] = 0.0
            rewards[t] = torch.as_tensor(reward * config.reward_scale, dtype=torch.float32, device=device)
            next_obs = network.as_input(obs, device)[0]
            next_done = torch.as_tensor(done, dtype=torch.float32, device=device)

        # ---- GAE (Schulman et al. 2016, eq. 16); done at t ends the episode at t (the SAME_STEP
        # reset observation, or the NEXT_STEP dummy step that follows, is not bootstrapped from)
        with torch.no_grad(), autocast(device):
            next_value = network.get_value(next_obs)
        advantages, returns = gae(rewards, values, dones, next_value, next_done, config.gamma, config.gae_lambda)
        # A NEXT_STEP dummy step is exactly one whose observation follows a done; episodes are the
        # runs of steps between dones (ids unique per env).
        valid = 1.0 - dones if dummy_steps else None
        segments = torch.cumsum(dones, 0) + (T + 1) * torch.arange(N, device=device) if dummy_steps else None

        # ---- PPO update; minibatches are sets of envs, so each keeps its episodes' steps together
        env_ids = np.arange(N)
        rng = np.random.default_rng(config.seed + iteration)
        stats = {}
        for _ in range(config.update_epochs):
            rng.shuffle(env_ids)
            for chunk in np.array_split(env_ids, config.num_minibatches):
                mb = torch.as_tensor(chunk, device=device)
                mask = valid[:, mb].reshape(-1) if valid is not None else None
                with autocast(device):
                    _, new_logprob, entropy, new_value, contexts = network.get_action_and_value(
                        _tree(lambda x, mb=mb: x[:, mb].reshape((-1,) + x.shape[2:]), observations),
                        actions[:, mb].reshape(-1),
                    )
                policy_loss, value_loss, entropy_loss = ppo_losses(
                    new_logprob,
                    logprobs[:, mb].reshape(-1),
                    advantages[:, mb].reshape(-1),
                    new_value,
                    returns[:, mb].reshape(-1),
                    entropy,
                    mask,
                    config.clip_coef,
                )
                loss = policy_loss + config.vf_coef * value_loss + config.ent_coef * entropy_loss
                if contexts is not None and config.consistency_coef > 0:
                    # z_t of one episode should agree: the simulator does not change within it.
                    episodes = segments[:, mb].reshape(-1) if segments is not None else None
                    consistency = _consistency(contexts[:, -1], episodes, mask, T)
                    loss = loss + config.consistency_coef * consistency
                    stats["consistency"] = float(consistency.detach())
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(network.parameters(), config.max_grad_norm)
                optimizer.step()
        stats |= {
            "policy_loss": float(policy_loss.detach()),
            "value_loss": float(value_loss.detach()),
            "entropy": float(-entropy_loss.detach()),
            "episode_return": float(np.mean(episode_returns[-N:])) if episode_returns else float("nan"),
        }
        bar.set_postfix(ret=f"{stats['episode_return']:.1f}")
        if on_iteration is not None:
            on_iteration(iteration, stats)
    envs.close()
    return Sim2RecPolicy(network, config, n_actions)
