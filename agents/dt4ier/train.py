"""DT4IER training: minibatches of K-step contexts, the balancing network, then the transformer
(`fit`), and `train` from logs to a `DT4IERPolicy`."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from agents.dt4ier.config import DT4IERConfig
from agents.dt4ier.data import DataStats, Trajectories, negative_actions, trajectories_from_logs
from agents.dt4ier.losses import action_loss, balancing_loss, contrastive_loss
from agents.dt4ier.model import BalancingNet, DecisionTransformer, user_attributes
from agents.dt4ier.policy import DT4IERPolicy
from agents.minibatches import WindowMinibatches
from recsim_env.encoders.trainer import autocast, resolve_device
from recsim_env.errors import DataError


def _minibatches(
    data: Trajectories, stats: DataStats, *, batch_size: int, seed: int, device: torch.device
) -> WindowMinibatches:
    """Minibatches of logged steps over the shared windows, feedback scaled as the network reads it."""
    return WindowMinibatches(
        data.item_ids,
        data.feedback * np.asarray(stats.feedback_scale, np.float32),
        n_steps=len(data),
        batch_size=batch_size,
        seed=seed,
        device=device,
    )


def _contexts(data: Trajectories, last: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Steps [B, K] ending at `last` [B] (clipped at each trajectory's start) and their validity."""
    steps = last[:, None] - (k - 1) + np.arange(k)
    valid = steps >= data.start[last][:, None]
    return np.where(valid, steps, last[:, None]), valid


def fit_balancing(
    config: DT4IERConfig, data: Trajectories, stats: DataStats, *, progress: bool = True
) -> BalancingNet:
    """The adaptive balancing network, trained alone on L_bal over logged steps (then frozen)."""
    from tqdm.auto import tqdm

    device = resolve_device(config.device)
    torch.manual_seed(config.seed + 1)
    net = BalancingNet(len(stats.feedback_columns) + 1).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    batches = _minibatches(data, stats, batch_size=256, seed=config.seed + 1, device=device)
    rtg = batches.tensor(stats.normalise(data.rtg))  # [T, 2]
    for _ in tqdm(range(config.balance_steps), desc="dt4ier balancing", disable=not progress):
        steps = batches.sample()
        attributes = user_attributes(*batches.windows(data.state[steps]), data.n_items)
        loss = balancing_loss(net(attributes), rtg[batches.tensor(steps, torch.long)], config.balance_gamma)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net.eval()


def fit(
    config: DT4IERConfig, data: Trajectories, *, progress: bool = True, on_step=None
) -> tuple[DecisionTransformer, DataStats, dict]:
    """Train the transformer (and, first, the balancing network) offline; deterministic on CPU."""
    from tqdm.auto import tqdm

    if len(data) == 0:
        raise DataError("DT4IER: no logged steps to train on")
    device = resolve_device(config.device)
    stats = DataStats.of(data)
    torch.manual_seed(config.seed)
    model = DecisionTransformer(config, data.n_items, len(stats.feedback_columns)).to(device)
    if model.balancing is not None:
        model.balancing.load_state_dict(fit_balancing(config, data, stats, progress=progress).state_dict())
        model.balancing.requires_grad_(False)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    batches = _minibatches(data, stats, batch_size=config.batch_size, seed=config.seed, device=device)
    rtg = batches.tensor(stats.normalise(data.rtg))  # [T, 2]
    action = batches.tensor(data.action, torch.long)  # [T]
    pad = data.n_items
    by_returns = config.contrastive_negatives == "returns"
    pool_np = np.flatnonzero(data.negative) if by_returns else negative_actions(data)
    pool = torch.as_tensor(pool_np, device=device)  # negative sessions' steps (`returns`) or items (`items`)
    use_contrastive = config.contrastive and len(pool) > 0
    # The contrastive negatives have a generator of their own, so every variant trains on the same
    # minibatches (common random numbers): the ablations then differ only in their losses.
    negative_rng = np.random.default_rng([config.seed, 1])
    k = config.context_len
    history = {"ce": [], "contrastive": []}
    model.train()
    for step in tqdm(range(config.steps), desc=f"dt4ier[{config.variant}]", disable=not progress):
        last = batches.sample()
        steps, valid_np = _contexts(data, last, k)
        flat = steps.reshape(-1)
        flat_t = batches.tensor(flat, torch.long)
        valid = torch.as_tensor(valid_np, device=device)
        item_ids, feedback = batches.windows(data.state[flat])
        actions = action[flat_t].view(-1, k)
        with autocast(device):
            states = model.encode_states(item_ids, feedback).view(len(last), k, -1)
            prompts = attributes = None
            if config.return_conditioned:
                step_rtg = rtg[flat_t]
                attributes = user_attributes(item_ids, feedback, pad)
                prompts = model.return_prompt(step_rtg, attributes).view(-1, k, 2)
            # Padding steps show the pad action; real actions are inputs (the causal mask hides a_t from y_t).
            inputs = torch.where(valid, actions, torch.full_like(actions, pad))
            predicted = model.predict(states, inputs, prompts, valid)[valid]  # [M, D]
            targets = actions[valid]
            ce = action_loss(model.logits(predicted), targets)
            loss = ce
            contrastive = torch.zeros((), device=device)
            positive_steps = ~torch.as_tensor(data.negative[flat].reshape(-1, k), device=device)[valid]
            if use_contrastive and positive_steps.any():
                table = model.encoder.item_embedding  # the logged action is a target: only y_t moves
                positive = table(targets[positive_steps]).detach()
                if by_returns:
                    # y^-: the same contexts prompted with the return-to-go of a step of a negative session
                    # (one per context and copy, held over the K steps). Like the positive, y^- is a fixed
                    # reference (detached): the term moves y_t only, not the predictions under other prompts.
                    q, b = config.negative_prompts, len(last)
                    drawn = pool[torch.as_tensor(negative_rng.integers(0, len(pool), (q, b)), device=device)]
                    negative_rtg = rtg[drawn][:, :, None].expand(q, b, k, 2).reshape(-1, 2)
                    negative_prompts = model.return_prompt(negative_rtg, attributes.repeat(q, 1)).view(
                        -1, k, 2
                    )
                    repeat = (q, 1, 1)
                    # a forked RNG: this pass's dropout leaves the training stream's masks as they were
                    with (
                        torch.no_grad(),
                        torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
                    ):
                        negative_predicted = model.predict(
                            states.repeat(repeat), inputs.repeat(q, 1), negative_prompts, valid.repeat(q, 1)
                        ).view(q, b, k, -1)[:, valid]  # [Q, M, D]
                    contrastive = contrastive_loss(
                        predicted[positive_steps],
                        positive,
                        negative_predicted[:, positive_steps].transpose(0, 1),
                        config.temperature,
                    )
                else:
                    negatives = pool[torch.as_tensor(negative_rng.integers(0, len(pool), config.n_negatives))]
                    contrastive = contrastive_loss(
                        predicted[positive_steps],
                        positive,
                        table(negatives).detach()[None],
                        config.temperature,
                        targets[positive_steps][:, None] == negatives[None],
                    )
                loss = ce + config.alpha * contrastive
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        history["ce"].append(float(ce.detach()))
        history["contrastive"].append(float(contrastive.detach()))
        if on_step is not None:
            on_step(step, {"ce": history["ce"][-1], "contrastive": history["contrastive"][-1]})
    tail = max(1, len(history["ce"]) // 10)
    train_stats = {
        "final_ce": float(np.mean(history["ce"][-tail:])) if history["ce"] else None,
        "final_contrastive": float(np.mean(history["contrastive"][-tail:])) if history["ce"] else None,
        "negative_steps": int(data.negative.sum()),
        "steps": len(data),
        "trajectories": int(len(np.unique(data.start))),
    }
    return model.eval(), stats, train_stats


def train(config: DT4IERConfig, data, *, progress: bool = True) -> tuple[DT4IERPolicy, dict]:
    """Train `config.variant` offline on logs (`LoggedInteractions` or `Trajectories`); policy and statistics."""
    trajectories = data if isinstance(data, Trajectories) else trajectories_from_logs(data, config)
    model, stats, train_stats = fit(config, trajectories, progress=progress)
    return DT4IERPolicy(model, config, stats), train_stats
