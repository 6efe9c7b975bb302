"""DT4IER: a decision transformer that balances immediate feedback and long-term retention.

Liu et al., "Sequential Recommendation for Optimizing Both Immediate Feedback and Long-term Retention",
SIGIR 2024, on top of DT4Rec (Zhao et al., "User Retention-oriented Recommendation with Decision
Transformer", WWW 2023) and the Decision Transformer (Chen et al., NeurIPS 2021). Trained offline from
logged trajectories, evaluated online in `SeqRec-v0` through `agents.Policy`.

Trajectories. One per logged user, in chronological order. Step t: state s_t = the user's last L
exposures before t (item ids and scaled feedback, left-padded with the pad id N, as `SeqRec-v0`'s
observation), action a_t = the logged item, reward vector r_t = (r^s_t, r^l_t):

- immediate r^s_t: the `immediate_signal` of the step: `click` in world logs; for MovieLens (feedback
  `rating`, no clicks) `rating>=4` (a rating of 4 or 5 counts as positive feedback);
- retention r^l_t: 1 / (1 + g) at the last step of a session, g = days until the user's next session
  (the env's `retention_weight` reward), 0 at every other step. Sessions are the logs' `session_id`
  when present (world logs), else runs of events less than `session_gap_s` apart (ml-100k: 1 hour,
  so "retention" is the inverse of the days until the user rates again after a pause of an hour).
  The gap after a user's last logged session is unknown (censored): it gets the mean retention of the
  sessions whose gap is known.

Returns-to-go are undiscounted and 2-D, R_t = sum_{t' >= t} r_t', summed to the end of the current
session (`return_horizon="session"`, the default: the retention part is then the session's retention,
held fixed within it) or of the user's trajectory (`"trajectory"`). Within a session the immediate
part falls with every click. The prompt is log(1 + R) / log(1 + scale) per component (scale: the 95th
percentile of initial returns), which keeps "one click left" apart from "none left". Negative sessions:
sessions (with a known gap) whose click total and retention both lie in the bottom `negative_quantile`.

Tokens. Each step contributes (R_t, s_t, a_t); K steps make 3K tokens (left-padded for a trajectory's
first steps). s_t is embedded by the project's SASRec encoder (`recsim_env.encoders`, feedback as
input), a_t by that encoder's (tied) item embedding, R_t by the multi-reward embedding:

    beta(R) = softmax(h + W_r h),  h = LeakyReLU(W R)              (B bucket weights)
    e_R = sum_b beta_b(R) M_b                                      (M: B learned meta embeddings [B, D])

Type and step embeddings are added; a causal transformer (the SASRec block) runs over the tokens with
a strictly causal mask (token i sees tokens j <= i), so the prediction of a_t, read at s_t's token,
sees R_1, s_1, a_1, ..., R_t, s_t and never a_t or anything after it (the public DT4IER code feeds the
target action's encoding to its decoder; we do not). The predicted action embedding y_t = W_o h_{s_t}
scores items with the tied item table: logits = y_t E^T + b.

Adaptive return balancing. A small network over user attributes u (the user's observable profile:
the mean of each scaled feedback signal over the state window and the window's fill; SeqRec-v0 exposes
no user features by default) gives (w_s, w_l) = softmax(f(u)), trained on the normalised returns R~ with

    L_bal = -(w_s R~_s + w_l R~_l) + gamma |w_s R~_s - w_l R~_l|,     gamma = 0.5

and then frozen; the return prompt fed to the reward embedding is 2 (w_s R~_s, w_l R~_l) (uniform
weights leave R~ unchanged).

Loss. L = L_ce + alpha L_contra (alpha = 0.1): L_ce the cross-entropy of every logged action in the
context; L_contra an InfoNCE on y_t at steps of non-negative sessions (cosine similarities, temperature
tau), the logged action's embedding as positive (a target: only y_t moves). The negatives
(`contrastive_negatives`):

- `returns` (default): the model's own predictions y^-_t for the same context with the return prompt
  replaced by the return-to-go of a step of a negative session (`negative_prompts` draws per context),
  so a prediction made for a good return must differ from the predictions the same history gets when
  heading for a session that fails on both rewards. This is DT4Rec's weighted contrastive learning as
  its public code builds it (negative copies of each sequence with other returns-to-go; DT4IER's code
  inherits the construction, with the term commented out of the loss in both repositories). Like the
  positive, y^- is a fixed reference (no gradient): the term shapes y_t, the prediction for the prompt
  actually given, and leaves the predictions under negative prompts to L_ce.
- `items`: the item embeddings of actions characteristic of negative sessions (a larger share of their
  steps than of all steps; drawn by frequency they were mostly the logger's favourite item, which every
  session shows).

The negatives are drawn from a generator of their own (and the negative-prompt pass runs under a forked
torch RNG), so every variant trains on the same minibatches, and a variant with the term starts from
the same weights and draws the same dropout masks as the same network without it: the two differ only in
the loss (`benchmarks/RESULTS.md`, DT4IER section, for what the term does in the world).

Inference. The policy is conditioned on a target return R* = the `target_quantile` of the training
trajectories' initial returns (each component), and keeps, per env row, the running return-to-go and
the last K - 1 tokens. A row continues its episode when its new history is the previous one shifted by
the item the policy just showed (anything else, e.g. the vector env's autoreset, starts a new episode
at R*). The immediate part decreases by the reward read from the observation (the newest history
entry's feedback). A new session (the observation's `session_step` back at 0 with `gap_days` > 0)
starts a new horizon at R* (`return_horizon="session"`), or (`"trajectory"`) decreases the retention
part by 1 / (1 + gap_days), read from the observation at the session's first step, the step at which
the logged returns-to-go drop the previous session's retention. The env reports the return gap only in
`info` at the session end, so within a session the retention part is held fixed either way; the
prompt floors returns-to-go at 0. Observations without `session_step`/`gap_days` (e.g. logged ones)
never start a new session. Memory is kept for the last batch size seen; `seed` clears it.

Variants (`DT4IERConfig.variant`): `dt4ier`; `dt` (plain DT: linear return embedding, no balancing,
no contrastive term); the ablations `no_weights`, `no_reward_encoder`, `no_contrastive`; and `bc`,
behaviour cloning with the same encoder and transformer over (s_t, a_t) tokens, no returns.

Modules: `config` (`DT4IERConfig`, the constants), `data` (`Trajectories`, `trajectories_from_logs`,
`DataStats`), `model` (`RewardEmbedding`, `BalancingNet`, `DecisionTransformer`), `losses` (L_bal,
L_ce, L_contra), `train` (`fit_balancing`, `fit`, `train`), `policy` (`DT4IERPolicy`).
"""

from agents.dt4ier.config import KIND, MAX_ITEMS, VARIANTS, DT4IERConfig
from agents.dt4ier.data import (
    DataStats,
    ImmediateSignal,
    Trajectories,
    negative_actions,
    trajectories_from_logs,
)
from agents.dt4ier.losses import action_loss, balancing_loss, contrastive_loss
from agents.dt4ier.model import BalancingNet, DecisionTransformer, RewardEmbedding, user_attributes
from agents.dt4ier.policy import DT4IERPolicy
from agents.dt4ier.train import fit, fit_balancing, train
from recsim_env.data.validate import SECONDS_PER_DAY
from recsim_env.encoders.trainer import resolve_device

__all__ = [
    "BalancingNet",
    "DT4IERConfig",
    "DT4IERPolicy",
    "DataStats",
    "DecisionTransformer",
    "ImmediateSignal",
    "KIND",
    "MAX_ITEMS",
    "RewardEmbedding",
    "SECONDS_PER_DAY",
    "Trajectories",
    "VARIANTS",
    "action_loss",
    "balancing_loss",
    "contrastive_loss",
    "fit",
    "fit_balancing",
    "negative_actions",
    "resolve_device",
    "train",
    "trajectories_from_logs",
    "user_attributes",
]
