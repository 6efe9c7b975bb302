"""DT4IER training: minibatches of K-step contexts, the balancing network, then the transformer
(`fit`), and `train` from logs to a `DT4IERPolicy`."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from agents.dt4ier.config import DT4IERConfig
from agents.dt4ier.data import DataStats, Trajectories, negative_actions, trajectories_from_logs
from agents.dt4ier.losses import action_loss, balancing_loss, contrastive_loss
from agents.dt4ier.model import BalancingNet, DecisionTransformer, user_attributes
from agents.dt4ier.policy import DT4IERPolicy
from recsim_env.encoders.trainer import autocast, resolve_device
from recsim_env.errors import DataError


class _Batcher:
    """Context windows of K steps ending at sampled steps, as tensors on the device."""

    def __init__(self, data: Trajectories, config: DT4IERConfig, stats: DataStats, device: torch.device):
        self.data, self.config, self.device = data, config, device
        self.item_ids = torch.as_tensor(np.array(data.item_ids), device=device)
        self.feedback = torch.as_tensor(
            data.feedback * np.asarray(stats.feedback_scale, np.float32), device=device
        )
        self.rtg = torch.as_tensor(stats.normalise(data.rtg), dtype=torch.float32, device=device)
        self.action = torch.as_tensor(np.array(data.action), device=device)
        self.rng = np.random.default_rng(config.seed)
        self.pad = data.n_items

    def sample(self) -> np.ndarray:
        return self.rng.integers(0, len(self.data), size=min(self.config.batch_size, len(self.data)))

    def windows(self, steps: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.as_tensor(self.data.state[steps], device=self.device)
        return self.item_ids[rows], self.feedback[rows]

    def contexts(self, last: np.ndarray):
        """Steps [B, K] ending at `last` [B] (clipped at each trajectory's start) and their validity."""
        k = self.config.context_len
        steps = last[:, None] - (k - 1) + np.arange(k)
        valid = steps >= self.data.start[last][:, None]
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
    batcher = _Batcher(data, dataclasses.replace(config, seed=config.seed + 1, batch_size=256), stats, device)
    for _ in tqdm(range(config.balance_steps), desc="dt4ier balancing", disable=not progress):
        steps = batcher.sample()
        attributes = user_attributes(*batcher.windows(steps), batcher.pad)
        loss = balancing_loss(
            net(attributes), batcher.rtg[torch.as_tensor(steps, device=device)], config.balance_gamma
        )
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
    batcher = _Batcher(data, config, stats, device)
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
        last = batcher.sample()
        steps, valid_np = batcher.contexts(last)
        flat = steps.reshape(-1)
        valid = torch.as_tensor(valid_np, device=device)
        item_ids, feedback = batcher.windows(flat)
        actions = batcher.action[torch.as_tensor(flat, device=device)].view(-1, k)
        with autocast(device):
            states = model.encode_states(item_ids, feedback).view(len(last), k, -1)
            prompts = attributes = None
            if config.return_conditioned:
                rtg = batcher.rtg[torch.as_tensor(flat, device=device)]
                attributes = user_attributes(item_ids, feedback, batcher.pad)
                prompts = model.return_prompt(rtg, attributes).view(-1, k, 2)
            # Padding steps show the pad action; real actions are inputs (the causal mask hides a_t from y_t).
            inputs = torch.where(valid, actions, torch.full_like(actions, batcher.pad))
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
                    negative_rtg = batcher.rtg[drawn][:, :, None].expand(q, b, k, 2).reshape(-1, 2)
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
