"""MIPS against IPS on a 100,000-item world log, against the world's exact truth (issue 24 acceptance).

A `WorldConfig(n_items=--n-items)` world; `--logs` logs, each of `--rows` first steps of fresh users
(`max_steps=1`, one item per slate) from a context-free logger over the world's popularity (`softmax`
with temperature `--temperature`, or `epsilon-greedy`), with its exact propensities. The target policy
picks a category from the user's observable category affinities and an item within it by popularity:

    q(e | x) = softmax(x_affinity / tau),   h(a | e) = pop(a)^beta / sum_{a' in e} pop(a')^beta
    pi_e(a | x) = q(e(a) | x) * h(a | e(a))

so `pi_e(a_i | x_i)` (what IPS needs) and `p(e | x_i, pi_e) = q(e | x_i)` (what MIPS needs) come without
any `[n, N]` array. The truth is exact: the mean over the world's population (users are drawn uniformly at
reset) of `sum_a pi_e(a | x_u) click_u(a)`, and it is checked against `--truth-users` on-policy rollouts of
the target policy in the same world (realised clicks, with their standard error). The exact expectation of
MIPS on these logs is computed the same way, so its bias is known without sampling noise; IPS and SNIPS
are unbiased and consistent for this logger (full support).

Prints a table (mean, bias, standard deviation, MSE of IPS, SNIPS, MIPS and SNMIPS over the logs) and one
JSON line.

    python benchmarks/ope_large_catalogue.py [--quick] [--logs 50] [--rows 2000] [--beta 1.5,10] [--n-items 100000]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time

import numpy as np
from tqdm.auto import tqdm

from evaluation.ope import (
    InverseProbabilityWeighting,
    MarginalizedInverseProbabilityWeighting,
    SelfNormalizedInverseProbabilityWeighting,
    SelfNormalizedMarginalizedInverseProbabilityWeighting,
)
from recsim_env.envs import SeqRecVectorEnv
from recsim_env.world import UserWorld, WorldConfig
from recsim_env.world.logging import LoggingPolicy, generate_logs

USER_CHUNK = 200  # users per [users, N] click-probability block when computing the truth
NUM_ENVS = 256  # sub-envs of a logging run
# `reset(seed=s)` seeds sub-env i with s + i, so runs whose base seeds are closer than their number of
# sub-envs share generators (the same users and step noise): every base seed here is a multiple of the
# sub-env count, logs at (1000 * seed + k) * NUM_ENVS and rollout waves above ROLLOUT_SEED.
ROLLOUT_SEED = 10**9


class ItemEmbedding:
    """A discrete action embedding: the item's category, split into `bins` within-category popularity bins.

    `bins = 1` is the category alone; `bins > 1` adds the item's popularity quantile within its category,
    an item attribute a production system knows (its click rate), for `C * bins` embedding values.
    """

    def __init__(self, world: UserWorld, popularity: np.ndarray, bins: int):
        c = world.config.n_categories
        category = world.item_category
        rank = np.empty(world.n_items, dtype=np.int64)
        for e in range(c):
            members = np.flatnonzero(category == e)
            order = members[np.argsort(popularity[members], kind="stable")]
            rank[order] = (np.arange(len(members)) * bins) // len(members)  # quantile bin within the category
        self.name = "category" if bins == 1 else f"category x {bins} popularity bins"
        self.bins = bins
        self.n_values = c * bins
        self.of_item = category * bins + rank  # [N]
        self.category_of_value = np.arange(self.n_values) // bins  # [E]


class TargetPolicy:
    """`pi_e(a | x) = q(c(a) | x) h(a | c(a))`: a category from the user's affinities, an item by popularity."""

    def __init__(self, world: UserWorld, popularity: np.ndarray, *, tau: float, beta: float):
        self.category = world.item_category
        self.n_categories = world.config.n_categories
        self.tau = tau
        self.beta = beta
        weight = (popularity / popularity.max()) ** beta
        per_category = np.bincount(self.category, weights=weight, minlength=self.n_categories)
        self.within = weight / per_category[self.category]  # h(a | c(a)) [N]
        # Items of each category and their within-category CDF, to sample a ~ h(. | c).
        self.members = [np.flatnonzero(self.category == e) for e in range(self.n_categories)]
        self.member_cdf = [np.cumsum(self.within[m]) for m in self.members]

    def category_dist(self, features: np.ndarray) -> np.ndarray:
        """q(c | x) `[B, C]` from the observable features `[B, F]` (the first C are category affinities)."""
        z = features[:, : self.n_categories].astype(np.float64) / self.tau
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def embedding_dist(self, features: np.ndarray, embedding: ItemEmbedding) -> np.ndarray:
        """p(e | x, pi_e) = q(c(e) | x) * sum_{a: e(a) = e} h(a | c(a)), `[B, E]`, without any `[B, N]` array."""
        mass = np.bincount(embedding.of_item, weights=self.within, minlength=embedding.n_values)  # [E]
        return self.category_dist(features)[:, embedding.category_of_value] * mass

    def probability(self, features: np.ndarray, items: np.ndarray) -> np.ndarray:
        """pi_e(a_i | x_i) `[B]`."""
        q = self.category_dist(features)
        return q[np.arange(len(items)), self.category[items]] * self.within[items]

    def sample(self, features: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One item per row `[B]`: c ~ q(. | x), then a ~ h(. | c)."""
        q = self.category_dist(features)
        e = (q.cumsum(axis=1) < rng.random((len(q), 1))).sum(axis=1).clip(max=self.n_categories - 1)
        items = np.empty(len(q), dtype=np.int64)
        u = rng.random(len(q))
        for c in np.unique(e):
            rows = np.flatnonzero(e == c)
            cdf = self.member_cdf[c]
            pick = np.searchsorted(cdf, u[rows] * cdf[-1], side="right").clip(max=len(cdf) - 1)
            items[rows] = self.members[c][pick]
        return items


def exact_values(world, targets, embeddings, logger_dist, logger_marginals):
    """Each target's true value and MIPS's exact expectation per embedding, over the whole population at reset.

    truth = mean_u sum_a pi_e(a | x_u) click_u(a);  E[MIPS] = mean_u sum_a pi_0(a) w(x_u, e(a)) click_u(a),
    w(x, e) = p(e | x, pi_e) / p(e | pi_0). Returns `(truth [T], mips [T, M])`.
    """
    n_users = world.n_users
    truth = np.zeros(len(targets))
    mips = np.zeros((len(targets), len(embeddings)))
    for start in tqdm(range(0, n_users, USER_CHUNK), desc="exact truth", unit="chunk", file=sys.stderr):
        users = np.arange(start, min(start + USER_CHUNK, n_users))
        uniforms = np.random.default_rng(start).random((len(users), world.n_start_uniforms))
        click = world.click_probabilities(world.initial_state(users, uniforms).state)  # [B, N]
        x = world.user_features[users]
        for t, target in enumerate(targets):
            q = target.category_dist(x)  # [B, C]
            truth[t] += float(((q[:, target.category] * target.within) * click).sum())
            for m, embedding in enumerate(embeddings):
                w = target.embedding_dist(x, embedding) / logger_marginals[m]  # [B, E]
                mips[t, m] += float((w[:, embedding.of_item] * logger_dist * click).sum())
    return truth / n_users, mips / n_users


def rollout_truth(world: UserWorld, target: TargetPolicy, n_users: int, seed: int) -> tuple[float, float]:
    """Mean realised click of the target policy over `n_users` one-step episodes, and its standard error."""
    num_envs = min(1024, n_users)
    env = SeqRecVectorEnv(num_envs=num_envs, max_steps=1, user_features=True, user_model=world)
    rng = np.random.default_rng(ROLLOUT_SEED + seed)
    clicks = []
    wave = 0
    while len(clicks) * num_envs < n_users:
        obs, _ = env.reset(seed=ROLLOUT_SEED + (seed * 1000 + wave) * num_envs)
        items = target.sample(obs["user_features"], rng)
        _, reward, _, _, _ = env.step(items)
        clicks.append(reward)
        wave += 1
    clicks = np.concatenate(clicks)[:n_users]
    return float(clicks.mean()), float(clicks.std(ddof=1) / np.sqrt(len(clicks)))


def one_log(world, logger, *, rows: int, seed: int) -> dict[str, np.ndarray]:
    """Log `rows` first steps of fresh users with `logger`: contexts, items, clicks and propensities."""
    interactions, _, users = generate_logs(
        logger, steps=rows, seed=seed, num_envs=NUM_ENVS, sessions_per_user=1, max_steps=1, user_model=world
    )
    world_user = users.set_index("user_id")["world_user_id"]
    return {
        "x": world.user_features[world_user.loc[interactions["user_id"].to_numpy()].to_numpy()],
        "item": interactions["item_id"].to_numpy(),
        "reward": interactions["click"].to_numpy(dtype=np.float64),
        "pscore": interactions["propensity"].to_numpy(dtype=np.float64),
    }


def estimates(log, world, target, embeddings, logger_marginals) -> dict[str, float]:
    """IPS, SNIPS and, per embedding, MIPS and SNMIPS of `target` on one log, with the largest weights."""
    x, item, reward, pscore = log["x"], log["item"], log["reward"], log["pscore"]
    n = len(item)
    rows = np.arange(n)
    # IPS needs only pi_e(a_i | x_i): a two-outcome distribution (the logged item, the rest) carries it exactly.
    pi_logged = target.probability(x, item)
    ips_kwargs = dict(
        reward=reward,
        action=np.zeros(n, dtype=np.int64),
        pscore=pscore,
        action_dist=np.stack([pi_logged, 1.0 - pi_logged], axis=1)[:, :, None],
    )
    out = {
        "IPS": InverseProbabilityWeighting().estimate_policy_value(**ips_kwargs),
        "SNIPS": SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**ips_kwargs),
        "max weight IPS": float((pi_logged / pscore).max()),
    }
    for embedding, marginal in zip(embeddings, logger_marginals, strict=True):
        embed = embedding.of_item[item]
        embed_dist = target.embedding_dist(x, embedding)[:, :, None]  # p(e | x_i, pi_e) [n, E, 1]
        kwargs = dict(reward=reward, action_embed=embed, embed_dist=embed_dist, embed_pscore=marginal[embed])
        tag = f"({embedding.bins})"
        out["MIPS" + tag] = MarginalizedInverseProbabilityWeighting().estimate_policy_value(**kwargs)
        out["SNMIPS" + tag] = SelfNormalizedMarginalizedInverseProbabilityWeighting().estimate_policy_value(
            **kwargs
        )
        out["max weight MIPS" + tag] = float((embed_dist[rows, embed, 0] / marginal[embed]).max())
    return out


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10 logs of 1,000 rows, 20,000 rollout users")
    parser.add_argument("--logs", type=int, default=50, help="seeded logs, with disjoint env generators")
    parser.add_argument("--rows", type=int, default=2000, help="logged rows (fresh users) per log")
    parser.add_argument("--n-items", type=int, default=100_000, help="catalogue size")
    parser.add_argument("--logger", choices=("softmax", "epsilon-greedy"), default="softmax")
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax logger's temperature")
    parser.add_argument("--epsilon", type=float, default=0.1, help="epsilon-greedy logger's exploration")
    parser.add_argument("--tau", type=float, default=0.3, help="targets' category temperature")
    parser.add_argument(
        "--beta",
        type=_floats,
        default=[1.5, 10.0],
        help="targets' within-category popularity exponents (a,b,..)",
    )
    parser.add_argument(
        "--bins",
        type=_ints,
        default=[1, 10],
        help="MIPS embeddings: popularity bins per category (1 = category)",
    )
    parser.add_argument("--truth-users", type=int, default=100_000, help="on-policy rollout users (a check)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.logs, args.rows, args.truth_users = 10, 1000, 20_000

    start = time.perf_counter()
    world = UserWorld(WorldConfig(n_items=args.n_items))
    build_s = time.perf_counter() - start
    popularity = world.item_popularity()
    logger = LoggingPolicy.for_world(args.logger, world, temperature=args.temperature, epsilon=args.epsilon)
    logger_dist = logger.probabilities(np.zeros((1, world.n_items), dtype=bool))[0]  # context-free pi_0 [N]
    embeddings = [ItemEmbedding(world, popularity, bins) for bins in args.bins]
    # p(e | pi_0): the logger's distribution summed over the items of each embedding value [E].
    marginals = [np.bincount(m.of_item, weights=logger_dist, minlength=m.n_values) for m in embeddings]
    targets = [TargetPolicy(world, popularity, tau=args.tau, beta=beta) for beta in args.beta]

    logs = [
        one_log(world, logger, rows=args.rows, seed=(1000 * args.seed + k) * NUM_ENVS)
        for k in tqdm(range(args.logs), desc="logging", unit="log", file=sys.stderr)
    ]
    truths, mips_expectations = exact_values(world, targets, embeddings, logger_dist, marginals)
    results = []
    for t, target in enumerate(targets):
        truth = float(truths[t])
        rollout, rollout_se = rollout_truth(world, target, args.truth_users, args.seed)
        runs = [estimates(log, world, target, embeddings, marginals) for log in logs]
        names = [k for k in runs[0] if not k.startswith("max weight")]
        max_weights = {k: max(r[k] for r in runs) for k in runs[0] if k.startswith("max weight")}
        print(
            f"target beta={target.beta:g}: truth {truth:.5f} (on-policy rollouts {rollout:.5f} +- {rollout_se:.5f}); "
            + "; ".join(f"{k} {v:.1f}" for k, v in max_weights.items())
        )
        print(
            f"  {'estimator':<11} {'mean':>9} {'bias':>9} {'exact bias':>10} {'std':>9} {'MSE':>10} {'RMSE/V':>7}"
        )
        summary = {}
        for name in names:
            values = np.array([r[name] for r in runs])
            mse = float(np.mean((values - truth) ** 2))
            exact_bias = 0.0 if name == "IPS" else None  # IPS is unbiased under full support
            if name.startswith("MIPS("):
                m = args.bins.index(int(name[5:-1]))
                exact_bias = float(mips_expectations[t, m]) - truth
            summary[name] = {
                "mean": float(values.mean()),
                "bias": float(values.mean() - truth),
                "exact_bias": exact_bias,
                "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                "mse": mse,
            }
            row = summary[name]
            exact = "" if exact_bias is None else f"{exact_bias:+.5f}"
            print(
                f"  {name:<11} {row['mean']:>9.5f} {row['bias']:>+9.5f} {exact:>10} {row['std']:>9.5f} "
                f"{mse:>10.3e} {np.sqrt(mse) / truth:>7.3f}"
            )
        results.append(
            {
                "beta": target.beta,
                "truth": truth,
                "rollout_truth": rollout,
                "rollout_se": rollout_se,
                "estimators": summary,
                "max_weights": max_weights,
                "mips_mse_below_ips": {
                    name: summary[name]["mse"] < summary["IPS"]["mse"]
                    for name in names
                    if name.startswith("MIPS")
                },
            }
        )
    result = {
        "benchmark": "ope_large_catalogue",
        "n_items": world.n_items,
        "n_categories": world.config.n_categories,
        "logger": args.logger,
        "temperature": args.temperature,
        "epsilon": args.epsilon,
        "tau": args.tau,
        "bins": args.bins,
        "logs": args.logs,
        "rows": args.rows,
        "seed": args.seed,
        "quick": args.quick,
        "targets": results,
        "world_build_s": round(build_s, 2),
        "wall_s": round(time.perf_counter() - start, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "python": platform.python_version(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
