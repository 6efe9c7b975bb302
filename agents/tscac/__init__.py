"""TSCAC: Two-Stage Constrained Actor-Critic (Cai et al., WWW 2023).

"Two-Stage Constrained Actor-Critic for Short Video Recommendation". Recommendation as a constrained
MDP: maximise the main return (here watch time) subject to each auxiliary return (click, like, follow,
share, and hate with a negative sign) staying above a threshold:

    max_pi J_1(pi)   s.t.   J_i(pi) >= c_i,   i = 2..m,        J_i(pi) = E_pi[sum_t gamma_i^t r_i,t]

Stage one, for each auxiliary signal i: a critic V_i trained by TD(0) on r_i with its own discount
gamma_i, and an actor pi_i trained with the advantage

    A_i(s, a) = r_i + gamma_i V_i(s') - V_i(s)                                     (TSCAC eq. 4)

Stage two: a main critic V_1 on watch time, and the main actor fitted to the closed-form solution of
"maximise A_1 while staying close (in KL, weights lambda_i) to every pi_i":

    pi*(a|s)  proportional to  prod_i pi_i(a|s)^(lambda_i / Lambda) exp(A_1(s, a) / Lambda),
    Lambda = sum_i lambda_i                                                         (TSCAC eq. 8)

by minimising KL(pi* || pi) over logged actions, i.e. the weighted log-likelihood

    L(pi) = -sum_j w_j log pi(a_j|s_j),
    w_j  proportional to  prod_i pi_i(a_j|s_j)^(lambda_i/Lambda) exp(A_1(s_j,a_j)/Lambda) / pi_b(a_j|s_j)

where pi_b is the logged propensity and the weights are self-normalised over the batch (sum_j w_j = 1),
which stands in for the per-state normaliser of pi* (`stage_two_weights`). Online, pi_b is the policy
that collected the batch (`train_online`).

Offline form of the stage-one actors: logged data comes from pi_b, so the actor step is advantage-
weighted regression (Peng et al. 2019), `-E_b[min(exp(A_i / beta), w_max) log pi_i(a|s)]`, the
KL-regularised solution of maximising A_i near pi_b (`actor_objective="awr"`, the default); the paper's
on-policy form `-E[A_i log pi_i(a|s)]` is `actor_objective="pg"`.

Baselines in the same code (`TSCACConfig.variant`):
- `bc`: behaviour cloning, `-E_b[log pi(a|s)]`.
- `rcpo`: Lagrangian constrained actor-critic (RCPO, Tessler et al. 2019): advantage
  `A_1 + sum_i mu_i A_i`; multipliers `mu_i >= 0` by dual ascent `mu_i <- max(0, mu_i + eta (c_i - J_i))`
  with `J_i` the SNIPS estimate of the actor's per-step rate on the batch.
- `scalarised`: a fixed weighted sum of the signals ("Pareto" scalarisation), advantage
  `A_1 + sum_i k_i A_i`.
Both baselines use the same AWR actor step as stage one.

Data. Transitions come from world logs per user in chronological order: s_t = the last L exposures
before step t (item ids and their feedback, left-padded with the pad id N, like `SeqRec-v0`'s
observation), a_t = the logged item, r_t = the step's feedback vector, s_{t+1}, done at the user's last
logged step, pi_b(a_t|s_t) = the logged `propensity`. Note the shift against the environment: the
env's first observation already holds the user's warm-start history, which logs do not contain, so
a logged user's first states have shorter (empty at t = 0) histories than any state the policy meets
online.

Networks: every actor and the critic read the state with a small SASRec encoder
(`recsim_env.encoders`, feedback_dim = 6). An actor's logits are `score(head(state)) + b` over the
whole catalogue, or, with `n_candidates > 0`, over the logged item plus `n_candidates` items drawn
uniformly per batch (sampled softmax, for large catalogues; acting still scores every item). The
critic has one value head per signal, trained together (TD(0) with a Polyak-averaged target). Stage
one's m policies pi_i are the m heads of one actor on a shared encoder (each head's projection and item
bias see only its own loss, the encoder their sum), which keeps CPU training to one forward pass; the
main actor and every baseline have their own encoder.

Modules: `config` (`TSCACConfig`, the signals), `data` (`Transitions`, `transitions_from_logs`),
`model` (`Actor`, `Critic`), `losses` (stage two's weights, AWR, the constraint thresholds), `train`
(both stages, `train`, `train_online`, `world_rates`), `policy` (`TSCACPolicy`).
"""

from agents.tscac.config import (
    AUX,
    AUX_SIGN,
    AUX_SIGNALS,
    MAIN,
    MAIN_SIGNAL,
    MAX_ITEMS,
    SIGNALS,
    VARIANTS,
    TSCACConfig,
)
from agents.tscac.data import Transitions, transitions_from_logs
from agents.tscac.losses import (
    awr_weights,
    constraint_thresholds,
    constraint_violations,
    signed_aux,
    stage_two_log_weights,
    stage_two_weights,
)
from agents.tscac.model import Actor, Critic
from agents.tscac.policy import TSCACPolicy
from agents.tscac.train import (
    StageOne,
    WeightFn,
    advantages,
    collect_transitions,
    fit_actor,
    fit_critic,
    fit_critics_and_stage_one,
    fit_main_actor,
    fit_stage_one,
    logged_log_probs,
    train,
    train_online,
    world_rates,
)
from recsim_env.encoders.trainer import resolve_device

__all__ = [
    "AUX",
    "AUX_SIGN",
    "AUX_SIGNALS",
    "MAIN",
    "MAIN_SIGNAL",
    "MAX_ITEMS",
    "SIGNALS",
    "VARIANTS",
    "Actor",
    "Critic",
    "StageOne",
    "TSCACConfig",
    "TSCACPolicy",
    "Transitions",
    "WeightFn",
    "advantages",
    "awr_weights",
    "collect_transitions",
    "constraint_thresholds",
    "constraint_violations",
    "fit_actor",
    "fit_critic",
    "fit_critics_and_stage_one",
    "fit_main_actor",
    "fit_stage_one",
    "logged_log_probs",
    "resolve_device",
    "signed_aux",
    "stage_two_log_weights",
    "stage_two_weights",
    "train",
    "train_online",
    "transitions_from_logs",
    "world_rates",
]
