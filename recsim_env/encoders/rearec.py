"""ReaRec: inference-time latent reasoning on a SASRec backbone ("Think Before Recommend", Tang et al.,
2025, arXiv:2503.22675).

Following the paper and the authors' code (TangJiakai/ReaRec, `ReaRecAutoRegressiveWrapper`, ERL.py, PRL.py):

* The item sequence is encoded by SASRec (same input, blocks and final LayerNorm). Then the last hidden
  state is fed back as the next input token K times ("reasoning steps"), each time plus a learned
  reasoning position embedding `R[k]` (a table of its own, separate from the item positions):
  `h_{t,0} = SASRec(s_1..s_t)_t`, `h_{t,k} = Blocks(s_1..s_t, r_{t,1}..r_{t,k})` at `r_{t,k}`, with
  `r_{t,k} = Dropout(h_{t,k-1} + R[k-1])`. The reasoning tokens attend causally to the items and to the
  earlier reasoning tokens of the same prefix (the reference code keeps a key/value cache; so do we).
* Unlike the reference code, which reasons after the last item only and trains one target per sequence,
  every position t of a training window reasons over its own prefix (the K passes run in parallel over
  positions), so ReaRec trains on the same targets as SASRec under this project's trainer.
* ERL (Ensemble Reasoning Learning, `method="erl"`, the default): the user state is the mean of the K + 1
  step states, `h_t = mean_k h_{t,k}`, trained with the next-item loss on it minus a diversity term,
  `L = CE(h_t) - lambda_KL * mean_{i != j} KL(p_j || sg(p_i))`, where `p_k = softmax(h_{t,k} E^T)` and `sg`
  stops the gradient (as ERL.py computes it). The diversity term is taken at the last position of each
  training window (one row per sequence, the reference code's training example); over every position
  it would cost three times the output layer for a regulariser.
* PRL (Progressive Reasoning Learning, `method="prl"`): the user state is the last step's, `h_t = h_{t,K}`;
  `L = CE(h_{t,K}) + mean_{k<K} CE(h_{t,k} E^T / s^{K-k}) + lambda_CL * InfoNCE`: earlier steps are trained
  at progressively higher temperatures (scale s), and a reasoning-aware contrastive term matches each
  step's state with the state of a second view whose reasoning inputs carry Gaussian noise (std sigma),
  against the other positions of the batch. The reference code adds the noise only after a warm-up of a
  few epochs; the loss interface here has no epoch, so the noise is on from the start. The reference scores
  with a temperature 0.07 on dot products of small embeddings; we score as SASRec does (no temperature)
  and take the contrastive similarity as the cosine over temperature `contrastive_temperature`.
* ERL is the default: it needs one view per batch (PRL's contrastive term doubles it), no schedule, and
  its state averages every step, so a step that reasons badly does not decide the ranking alone.
* K = 0 is SASRec exactly (the same parameters, the same state); the reference code's default is K = 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recsim_env.checks import check_choice, check_config_fields, check_integer, check_real
from recsim_env.encoders.base import IGNORE_TARGET, TrainingBatch, attention_mask
from recsim_env.encoders.sasrec import MultiHeadSelfAttention, SASRec, SASRecBlock, SASRecConfig

REASONING_METHODS = ("erl", "prl")


@dataclass(frozen=True, kw_only=True)
class ReaRecConfig(SASRecConfig):
    """ReaRec hyperparameters: SASRec's, plus the reasoning steps and the ERL / PRL objective."""

    reasoning_steps: int = 2
    """K: hidden states fed back after the SASRec pass (0 is SASRec)."""
    method: str = "erl"
    """Training objective and user state: "erl" (mean of the step states, diversity term) or "prl" (last
    step's state, progressive temperatures and a contrastive term); see the module docstring."""
    kl_weight: float = 0.05
    """ERL: weight lambda_KL of the (subtracted) pairwise KL diversity term over the full catalogue."""
    temperature_scale: float = 5.0
    """PRL: step k < K is trained with its logits divided by temperature_scale ** (K - k)."""
    noise_std: float = 0.01
    """PRL: std sigma of the Gaussian noise on the reasoning inputs of the contrastive view."""
    contrastive_weight: float = 1.0
    """PRL: weight lambda_CL of the reasoning-aware contrastive term (0 skips the noisy view)."""
    contrastive_temperature: float = 0.07
    """PRL: temperature of the contrastive term's cosine similarities."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config_fields(self, ("reasoning_steps",), check_integer, low=0)
        check_config_fields(self, ("method",), check_choice, choices=REASONING_METHODS)
        check_config_fields(self, ("kl_weight", "noise_std", "contrastive_weight"), check_real, low=0.0)
        check_config_fields(self, ("temperature_scale",), check_real, low=1.0)
        check_config_fields(self, ("contrastive_temperature",), check_real, low=0.0, low_open=True)


class ReaRec(SASRec):
    """ReaRec (Tang et al. 2025): SASRec followed by K latent reasoning steps per position.

    `h_{t,0} = F_t` (SASRec), `r_{t,k} = h_{t,k-1} + R[k-1]`, `h_{t,k} = LN(Blocks([s_1..s_t, r_{t,1..k}]))`
    at the last token; the hidden state at position t is `mean_k h_{t,k}` (ERL) or `h_{t,K}` (PRL), scored
    as `r_{i,t} = h_t . E_i`.
    """

    name = "rearec"
    config_class = ReaRecConfig
    encode_last = None
    """SASRec's last-position shortcut would skip the reasoning steps: callers that look for it (a
    learned simulator's incremental inference) take the plain forward instead."""

    def __init__(self, config: ReaRecConfig) -> None:
        super().__init__(config)
        k = config.reasoning_steps
        self.reasoning_position_embedding = nn.Embedding(k, config.d_model) if k > 0 else None

    # -- the reasoning passes ----------------------------------------------------------------------

    def step_states(
        self,
        item_ids: torch.Tensor,
        feedback: torch.Tensor | None,
        padding_mask: torch.Tensor,
        *,
        noisy_from: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """`[B, L, K + 1, D]` state of every reasoning step at every position (step 0 is SASRec's).

        Rows `noisy_from:` get Gaussian noise (std `config.noise_std`) on their reasoning inputs.
        """
        keep = padding_mask.unsqueeze(-1)  # [B, L, 1]
        item_mask = attention_mask(padding_mask, causal=True)  # [B, 1, L, L]: r_{t,k} sees items 1..t too
        caches: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in self.blocks]
        x = self.block_input(item_ids, feedback, padding_mask)
        states = []
        for step in range(self.config.reasoning_steps + 1):
            for block, cache in zip(self.blocks, caches, strict=True):
                x = _cached_block(block, x, item_mask, cache, training=self.training) * keep
            h = self.final_norm(x)
            states.append(h)
            if step == self.config.reasoning_steps:
                break
            x = h + self.reasoning_position_embedding.weight[step]
            if noisy_from is not None:
                noise = _normal(x[noisy_from:].shape, x.device, generator) * self.config.noise_std
                x = torch.cat([x[:noisy_from], x[noisy_from:] + noise.to(x.dtype)])
            x = self.input_dropout(x) * keep
        return torch.stack(states, dim=2)

    def combine(self, states: torch.Tensor) -> torch.Tensor:
        """`[..., D]` user state from `[..., K + 1, D]` step states: their mean (ERL) or the last (PRL)."""
        return states.mean(-2) if self.config.method == "erl" else states[..., -1, :]

    def encode(self, item_ids, *, timestamps, feedback, padding_mask):
        del timestamps  # SASRec has no notion of time
        return self.combine(self.step_states(item_ids, feedback, padding_mask))

    # -- training ----------------------------------------------------------------------------------

    def loss(self, batch: TrainingBatch, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """ERL or PRL objective (module docstring) over the positions of `batch` that have a target."""
        cfg = self.config
        padding_mask = self.padding_mask(batch.item_ids)
        contrast = cfg.method == "prl" and cfg.contrastive_weight > 0 and cfg.reasoning_steps > 0
        if contrast:  # a second, noisy view of every row, as the reference code stacks them
            b = batch.item_ids.shape[0]
            feedback = torch.cat([batch.feedback] * 2) if batch.feedback is not None else None
            both = self.step_states(
                torch.cat([batch.item_ids] * 2),
                feedback,
                torch.cat([padding_mask] * 2),
                noisy_from=b,
                generator=generator,
            )
            states, noisy = both[:b], both[b:]
        else:
            states = self.step_states(batch.item_ids, batch.feedback, padding_mask)
        selected = batch.targets != IGNORE_TARGET  # [B, L]
        steps, targets = states[selected], batch.targets[selected]  # [M, K + 1, D], [M]
        if targets.numel() == 0:
            return states.sum() * 0.0
        value = self.next_item_loss(self.combine(steps), targets, generator=generator)
        if cfg.reasoning_steps == 0:
            return value
        if cfg.method == "erl":
            last = states[:, -1][selected[:, -1]]  # [B', K + 1, D]: one row per window, as the reference
            if cfg.kl_weight > 0 and last.shape[0] > 0:
                value = value - cfg.kl_weight * _pairwise_kl(self.score(last).float())
            return value
        k = cfg.reasoning_steps
        scales = cfg.temperature_scale ** torch.arange(k, 0, -1, device=steps.device, dtype=torch.float32)
        earlier = self.score(steps[:, :-1]).float() / scales[None, :, None]  # [M, K, N]
        value = value + F.cross_entropy(earlier.flatten(0, 1), targets.repeat_interleave(k))
        if contrast:
            value = value + cfg.contrastive_weight * _info_nce(
                steps[:, 1:], noisy[selected][:, 1:], cfg.contrastive_temperature
            )
        return value


def _cached_block(
    block: SASRecBlock,
    x: torch.Tensor,
    item_mask: torch.Tensor,
    cache: list[tuple[torch.Tensor, torch.Tensor]],
    *,
    training: bool,
) -> torch.Tensor:
    """`SASRecBlock.forward` for new tokens `x` `[B, L, D]` whose keys and values are those of the earlier
    passes (`cache`, extended in place with this pass's) followed by their own.

    `item_mask` `[B, 1, L, L]` is the item pass's causal mask: the first pass attends under it, and a
    reasoning token at position t sees items 1..t under it plus the reasoning tokens of its own position.
    """
    queries = block.attention_norm(x)
    source = x if block.reference else queries  # the reference layout reads keys from the raw stream
    cache.append(_keys_values(block.attention, source))
    if len(cache) == 1:
        attended = _attend(block.attention, queries, *cache[0], item_mask, training=training)
    else:
        attended = _attend_reasoning(block.attention, queries, cache, item_mask, training=training)
    if block.reference:
        x = block.ffn_norm(queries + block.dropout(attended))
        return x + block.dropout(block.ffn(x))
    x = x + block.dropout(attended)
    return x + block.dropout(block.ffn(block.ffn_norm(x)))


def _heads(attention: MultiHeadSelfAttention, source: torch.Tensor, part: int) -> torch.Tensor:
    """`[B, H, L, D/H]` queries (`part` 0), keys (1) or values (2) of `source` `[B, L, D]` under `attention`'s
    projections."""
    b, length, d = source.shape
    weight, bias = attention.qkv.weight.chunk(3)[part], attention.qkv.bias.chunk(3)[part]
    return (
        F.linear(source, weight, bias)
        .view(b, length, attention.n_heads, d // attention.n_heads)
        .transpose(1, 2)
    )


def _keys_values(
    attention: MultiHeadSelfAttention, source: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """`[B, H, L, D/H]` keys and values of `source` `[B, L, D]` under `attention`'s projections."""
    return _heads(attention, source, 1), _heads(attention, source, 2)


def _attend(
    attention: MultiHeadSelfAttention,
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    *,
    training: bool,
) -> torch.Tensor:
    """`attention`'s output for `queries` `[B, L, D]` over cached `keys`/`values` `[B, H, S, D/H]`."""
    b, length, d = queries.shape
    q = _heads(attention, queries, 0)
    y = F.scaled_dot_product_attention(
        q,
        keys.to(q.dtype),
        values.to(q.dtype),
        attn_mask=mask,
        dropout_p=attention.dropout if training else 0.0,
    )
    return attention.out(y.transpose(1, 2).reshape(b, length, d))


def _attend_reasoning(
    attention: MultiHeadSelfAttention,
    queries: torch.Tensor,
    cache: list[tuple[torch.Tensor, torch.Tensor]],
    item_mask: torch.Tensor,
    *,
    training: bool,
) -> torch.Tensor:
    """Attention of reasoning step k's queries `[B, L, D]` over the items (`cache[0]`, under `item_mask`)
    and the reasoning tokens 1..k of the same position (`cache[1:]`).

    The same softmax as one attention over the concatenated `[B, H, L, (k + 1) L]` keys with an identity
    mask per reasoning step, but each position's own reasoning keys are
    scored with one dot product per step (`[B, H, L, 1]`) instead of an `L x L` block that is all masked
    but its diagonal: the attention costs one item pass plus k columns, not k + 1 item passes.
    """
    b, length, d = queries.shape
    q = _heads(attention, queries, 0)  # [B, H, L, Dh]
    (item_keys, item_values), own = cache[0], cache[1:]
    scale = 1.0 / math.sqrt(q.shape[-1])
    item_scores = (q @ item_keys.to(q.dtype).transpose(-1, -2)) * scale
    item_scores = item_scores.masked_fill(~item_mask, float("-inf"))  # [B, H, L, L]
    own_scores = torch.stack([(q * k.to(q.dtype)).sum(-1) for k, _ in own], dim=-1) * scale  # [B, H, L, k]
    weights = torch.softmax(torch.cat([item_scores, own_scores], dim=-1), dim=-1)
    weights = F.dropout(weights, attention.dropout, training=training)
    y = weights[..., :length] @ item_values.to(q.dtype)
    own_values = torch.stack([v.to(q.dtype) for _, v in own], dim=-2)  # [B, H, L, k, Dh]
    y = y + (weights[..., length:, None] * own_values).sum(-2)
    return attention.out(y.transpose(1, 2).reshape(b, length, d))


def _pairwise_kl(logits: torch.Tensor) -> torch.Tensor:
    """Mean over ordered step pairs i != j of `KL(p_j || sg(p_i))`, `p = softmax(logits)`, logits `[M, S, N]`."""
    log_p = F.log_softmax(logits, dim=-1)
    p = log_p.exp()
    negative_entropy = (p * log_p).sum(-1)  # [M, S]
    cross = torch.einsum("mjn,min->mij", p, log_p.detach())  # [M, i, j]: sum_n p_j log sg(p_i)
    kl = negative_entropy[:, None, :] - cross
    n_steps = logits.shape[1]
    off_diagonal = ~torch.eye(n_steps, dtype=torch.bool, device=logits.device)
    return kl[:, off_diagonal].mean()


def _info_nce(anchors: torch.Tensor, positives: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE per reasoning step: row m of `positives` `[M, S, D]` against every row of `anchors`."""
    a = F.normalize(anchors.float(), dim=-1).transpose(0, 1)  # [S, M, D]
    p = F.normalize(positives.float(), dim=-1).transpose(0, 1)
    similarity = p @ a.transpose(1, 2) / temperature  # [S, M, M]
    labels = torch.arange(a.shape[1], device=a.device).expand(a.shape[0], -1)
    return F.cross_entropy(similarity.flatten(0, 1), labels.flatten())


def _normal(shape, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    if generator is not None and generator.device != device:
        return torch.randn(shape, generator=generator).to(device)
    return torch.randn(shape, generator=generator, device=device)
