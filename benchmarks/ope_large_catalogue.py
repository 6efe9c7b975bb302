"""MIPS against IPS on a 100,000-item world log, against the world's exact truth (issue 24 acceptance).

A `WorldConfig(n_items=--n-items)` world; `--logs` logs, each of `--rows` first steps of fresh users
(`max_steps=1`, one item per slate) from a context-free logger over the world's popularity (`softmax`
with temperature `--temperature`, or `epsilon-greedy`), with its exact propensities. Each target policy
picks a category from the user's observable category affinities and an item within it:

    q(c | x) = softmax(x_affinity / tau),   pi_e(a | x) = q(c(a) | x) * h(a | c(a))

with two families of `h`: popularity (`--beta`: `h` proportional to `pop(a)^beta`, a within-category
shift from the logger that follows the click rate) and short-first (`--gamma`: the logger's own
within-category distribution tilted by `duration(a)^-gamma`, a shift the first-step click ignores, the
regime MIPS is built for). MIPS's embeddings are nested in the categories: the category x `--bins`
popularity bins (`MIPS(1)`: the category, `MIPS(pop10)`) and the category x `--clusters` k-means
clusters of the items' content features (what a click depends on through the item; `MIPS(km1000)`:
1,000 values). So `pi_e(a_i | x_i)` (what IPS needs) and `p(e | x_i, pi_e) = q(c(e) | x_i) sum_{a in e}
h(a | c)` (what MIPS needs) come without any `[n, N]` array.

The truth is exact: the mean over the world's population (users are drawn uniformly at reset) of
`sum_a pi_e(a | x_u) click_u(a)`, checked against `--truth-users` on-policy rollouts of the target in
the same world (realised clicks, with their standard error). The exact expectation of MIPS on these
logs is computed the same way, so its bias is known without sampling noise; IPS and SNIPS are unbiased
and consistent for this logger (full support). Each embedding's direct effect (how much clicks vary
within one of its values) is reported beside it.

Prints, per target, the largest weights and a table (mean, bias, exact bias, standard deviation, bias^2,
variance, MSE = bias^2 + variance over the logs) of IPS, SNIPS, MIPS and SNMIPS per embedding, and one
JSON line whose `mips_vs_ips` says, per target and embedding, MIPS's MSE, IPS's and whether MIPS's is
lower.

    python benchmarks/ope_large_catalogue.py [--quick] [--logs 50] [--rows 2000] [--beta 1.5,10]
        [--gamma 2,4] [--bins 1,10] [--clusters 10,100] [--n-items 100000]
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


def kmeans(points: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 25) -> np.ndarray:
    """Lloyd's k-means from `k` distinct seeded points: the cluster of each point `[P]` in `[0, k)`.

    An emptied cluster is re-seeded at the point farthest from its centre, so all `k` clusters are used.
    """
    k = min(k, len(points))
    centres = points[rng.choice(len(points), size=k, replace=False)].copy()
    squared = (points**2).sum(axis=1)
    for _ in range(iterations):
        distance = squared[:, None] - 2.0 * points @ centres.T + (centres**2).sum(axis=1)[None, :]  # [P, k]
        label = distance.argmin(axis=1)
        counts = np.bincount(label, minlength=k)
        for j in np.flatnonzero(counts == 0):
            far = int(distance[np.arange(len(points)), label].argmax())
            label[far] = j
            distance[far] = -np.inf  # not picked twice
        counts = np.bincount(label, minlength=k)
        sums = np.zeros_like(centres)
        np.add.at(sums, label, points)
        centres = sums / counts[:, None]
    return label


class ItemEmbedding:
    """A discrete action embedding nested in the categories: `of_item [N]` in `[0, E)`, `category_of_value [E]`.

    Build it with `ItemEmbedding.popularity_bins` (category x within-category popularity quantile) or
    `ItemEmbedding.content_clusters` (category x k-means clusters of the items' content features).
    """

    def __init__(self, name: str, tag: str, of_item: np.ndarray, values_per_category: int, n_categories: int):
        self.name = name
        self.tag = tag
        self.n_values = n_categories * values_per_category
        self.of_item = of_item  # [N]
        self.category_of_value = np.arange(self.n_values) // values_per_category  # [E]
        # The items sorted by value, and where each present value's run starts, for `sum_by_value`.
        self._order = np.argsort(of_item, kind="stable")
        self._present, self._starts = np.unique(of_item[self._order], return_index=True)

    def sum_by_value(self, rows: np.ndarray) -> np.ndarray:
        """`[B, E]` sums of `rows [B, N]` over the items of each embedding value."""
        out = np.zeros((len(rows), self.n_values))
        out[:, self._present] = np.add.reduceat(rows[:, self._order], self._starts, axis=1)
        return out

    @classmethod
    def popularity_bins(cls, world: UserWorld, popularity: np.ndarray, bins: int) -> ItemEmbedding:
        """The category alone (`bins = 1`) or category x `bins` within-category popularity quantiles."""
        category = world.item_category
        rank = np.empty(world.n_items, dtype=np.int64)
        for c in range(world.config.n_categories):
            members = np.flatnonzero(category == c)
            order = members[np.argsort(popularity[members], kind="stable")]
            rank[order] = (np.arange(len(members)) * bins) // len(members)  # quantile bin within the category
        name = "category" if bins == 1 else f"category x {bins} popularity bins"
        tag = "(1)" if bins == 1 else f"(pop{bins})"
        return cls(name, tag, category * bins + rank, bins, world.config.n_categories)

    @classmethod
    def content_clusters(cls, world: UserWorld, per_category: int, seed: int) -> ItemEmbedding:
        """Category x `per_category` k-means clusters of the items' content features.

        A first-step click has utility `z_u . f_a` with `z_u = [u, 1]` (interest) and the item's coefficients
        `f_a = [w_aff e_a, w_cb clickbait_a]`; the features are `f_a M^{1/2}`, `M = E_u[z_u z_u^T]` over the
        population, so the Euclidean distance of two items is the root-mean-square gap of their click
        utility over the users. Items of one cluster then click alike for most users (MIPS's
        no-direct-effect assumption, approximately). `M` reads the world's hidden interests: it stands for
        the item embeddings a production system learns from its clicks.
        """
        cfg = world.config
        coefficients = np.concatenate(
            [
                cfg.affinity_weight * world.item_embeddings,
                cfg.clickbait_weight * world.item_clickbait[:, None],
            ],
            axis=1,
        )  # [N, D + 1]
        z = np.concatenate([world.user_interest, np.ones((world.n_users, 1))], axis=1)
        eigenvalues, eigenvectors = np.linalg.eigh(z.T @ z / len(z))
        root = eigenvectors @ np.diag(np.sqrt(eigenvalues.clip(min=0.0))) @ eigenvectors.T  # M^{1/2}
        features = coefficients @ root
        rng = np.random.default_rng(seed)
        of_item = np.empty(world.n_items, dtype=np.int64)
        for c in range(cfg.n_categories):
            members = np.flatnonzero(world.item_category == c)
            of_item[members] = c * per_category + kmeans(features[members], per_category, rng)
        return cls(
            f"category x {per_category} k-means content clusters",
            f"(km{cfg.n_categories * per_category})",
            of_item,
            per_category,
            cfg.n_categories,
        )


class TargetPolicy:
    """`pi_e(a | x) = q(c(a) | x) h(a | c(a))`: a category from the user's affinities, then an item in it.

    `q(c | x) = softmax(x_affinity / tau)`; `h(a | c)` (`within [N]`, summing to 1 over each category) is
    the target's fixed choice of item within the category (`TargetPolicy.popularity`, `TargetPolicy.short_first`).
    """

    def __init__(self, world: UserWorld, within: np.ndarray, *, tau: float, name: str):
        self.name = name
        self.category = world.item_category
        self.n_categories = world.config.n_categories
        self.tau = tau
        self.within = within  # h(a | c(a)) [N]
        # Items of each category and their within-category CDF, to sample a ~ h(. | c).
        self.members = [np.flatnonzero(self.category == e) for e in range(self.n_categories)]
        self.member_cdf = [np.cumsum(self.within[m]) for m in self.members]

    @classmethod
    def popularity(cls, world: UserWorld, popularity: np.ndarray, *, tau: float, beta: float) -> TargetPolicy:
        """`h(a | c)` proportional to `pop(a)^beta`: its shift from the logger within a category follows the click rate."""
        weight = (popularity / popularity.max()) ** beta
        return cls(world, _per_category(world, weight), tau=tau, name=f"popularity beta={beta:g}")

    @classmethod
    def short_first(
        cls, world: UserWorld, logger_dist: np.ndarray, *, tau: float, gamma: float
    ) -> TargetPolicy:
        """`h(a | c)` proportional to `pi_0(a) (duration(a) / median)^-gamma`: the logger tilted to short items.

        The duration does not enter a first-step click (only the watch time), so this target differs from
        the logger within every embedding value in a way the reward ignores: the regime MIPS is built for.
        """
        duration = world.item_duration_s / np.median(world.item_duration_s)
        weight = logger_dist / logger_dist.max() * duration**-gamma
        return cls(world, _per_category(world, weight), tau=tau, name=f"short-first gamma={gamma:g}")

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


def _per_category(world: UserWorld, weight: np.ndarray) -> np.ndarray:
    """`weight [N]` normalised to sum to 1 over each category's items."""
    total = np.bincount(world.item_category, weights=weight, minlength=world.config.n_categories)
    return weight / total[world.item_category]


def exact_values(world, targets, embeddings, logger_dist, logger_marginals):
    """Each target's true value, MIPS's exact expectation per embedding and each embedding's direct effect.

    truth = mean_u sum_a pi_e(a | x_u) click_u(a);  E[MIPS] = mean_u sum_e w(x_u, e) S_u(e) with
    w(x, e) = p(e | x, pi_e) / p(e | pi_0) and S_u(e) = sum_{a: e(a) = e} pi_0(a) click_u(a). The direct
    effect of an embedding is the population mean of the logger-weighted standard deviation of the click
    probability within an embedding value, `sqrt(sum_a pi_0(a) (click_u(a) - S_u(e(a)) / p(e(a) | pi_0))^2)`
    (0: no direct effect). Returns `(truth [T], mips [T, M], direct_effect [M])`.
    """
    n_users = world.n_users
    truth = np.zeros(len(targets))
    mips = np.zeros((len(targets), len(embeddings)))
    direct = np.zeros(len(embeddings))
    # h(a | c) laid out per category `[N, T * C]`, so one product gives every target's per-category sums.
    n_categories = world.config.n_categories
    by_category = np.zeros((world.n_items, len(targets) * n_categories))
    for t, target in enumerate(targets):
        by_category[np.arange(world.n_items), t * n_categories + target.category] = target.within
    for start in tqdm(range(0, n_users, USER_CHUNK), desc="exact truth", unit="chunk", file=sys.stderr):
        users = np.arange(start, min(start + USER_CHUNK, n_users))
        uniforms = np.random.default_rng(start).random((len(users), world.n_start_uniforms))
        click = world.click_probabilities(world.initial_state(users, uniforms).state)  # [B, N]
        x = world.user_features[users]
        per_category = (click @ by_category).reshape(len(users), len(targets), n_categories)  # [B, T, C]
        weighted = click * logger_dist  # [B, N]
        second = (weighted * click).sum(axis=1)  # sum_a pi_0(a) click_u(a)^2 [B]
        for m, (embedding, marginal) in enumerate(zip(embeddings, logger_marginals, strict=True)):
            marginal = np.where(marginal > 0, marginal, 1.0)  # an unused value has no mass on either side
            per_value = embedding.sum_by_value(weighted)  # S_u(e) [B, E]
            spread = second - (per_value**2 / marginal).sum(axis=1)
            direct[m] += float(np.sqrt(spread.clip(min=0.0)).sum())
            for t, target in enumerate(targets):
                w = target.embedding_dist(x, embedding) / marginal  # [B, E]
                mips[t, m] += float((w * per_value).sum())
        for t, target in enumerate(targets):
            truth[t] += float((target.category_dist(x) * per_category[:, t]).sum())
    return truth / n_users, mips / n_users, direct / n_users


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
        tag = embedding.tag
        out["MIPS" + tag] = MarginalizedInverseProbabilityWeighting().estimate_policy_value(**kwargs)
        out["SNMIPS" + tag] = SelfNormalizedMarginalizedInverseProbabilityWeighting().estimate_policy_value(
            **kwargs
        )
        out["max weight MIPS" + tag] = float((embed_dist[rows, embed, 0] / marginal[embed]).max())
    return out


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def _summary(values: np.ndarray, truth: float, exact_bias: float | None) -> dict:
    """Mean, bias, standard deviation and MSE = bias^2 + variance (both over the logs, ddof 0) of one estimator."""
    bias = float(values.mean() - truth)
    variance = float(values.var())
    return {
        "mean": float(values.mean()),
        "bias": bias,
        "exact_bias": exact_bias,
        "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "bias2": bias**2,
        "variance": variance,
        "mse": float(np.mean((values - truth) ** 2)),
    }


def _paired_se(runs: list[dict], name: str, other: str, truth: float) -> float:
    """Standard error of `MSE(name) - MSE(other)` over the logs, from each log's squared-error difference."""
    difference = np.array([(r[name] - truth) ** 2 - (r[other] - truth) ** 2 for r in runs])
    return float(difference.std(ddof=1) / np.sqrt(len(runs))) if len(runs) > 1 else float("nan")


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
        help="popularity targets: within-category popularity exponents (a,b,..; empty: none)",
    )
    parser.add_argument(
        "--gamma",
        type=_floats,
        default=[2.0, 4.0],
        help="short-first targets: the logger tilted by duration^-gamma within a category (a,b,..; empty: none)",
    )
    parser.add_argument(
        "--bins",
        type=_ints,
        default=[1, 10],
        help="MIPS embeddings: popularity bins per category (1 = category)",
    )
    parser.add_argument(
        "--clusters",
        type=_ints,
        default=[10, 100],
        help="MIPS embeddings: k-means content clusters per category",
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
    embeddings = [ItemEmbedding.popularity_bins(world, popularity, bins) for bins in args.bins] + [
        ItemEmbedding.content_clusters(world, k, args.seed) for k in args.clusters
    ]
    # p(e | pi_0): the logger's distribution summed over the items of each embedding value [E].
    marginals = [np.bincount(m.of_item, weights=logger_dist, minlength=m.n_values) for m in embeddings]
    targets = [TargetPolicy.popularity(world, popularity, tau=args.tau, beta=b) for b in args.beta] + [
        TargetPolicy.short_first(world, logger_dist, tau=args.tau, gamma=g) for g in args.gamma
    ]

    logs = [
        one_log(world, logger, rows=args.rows, seed=(1000 * args.seed + k) * NUM_ENVS)
        for k in tqdm(range(args.logs), desc="logging", unit="log", file=sys.stderr)
    ]
    truths, mips_expectations, direct_effect = exact_values(
        world, targets, embeddings, logger_dist, marginals
    )
    print("embeddings (values, used values, direct effect = mean within-value click std under the logger):")
    for embedding, effect in zip(embeddings, direct_effect, strict=True):
        used = int((np.bincount(embedding.of_item, minlength=embedding.n_values) > 0).sum())
        print(
            f"  MIPS{embedding.tag:<8} {embedding.name}: {embedding.n_values} values ({used} used), {effect:.4f}"
        )
    results = []
    for t, target in enumerate(targets):
        truth = float(truths[t])
        rollout, rollout_se = rollout_truth(world, target, args.truth_users, args.seed)
        runs = [estimates(log, world, target, embeddings, marginals) for log in logs]
        names = [k for k in runs[0] if not k.startswith("max weight")]
        max_weights = {k: max(r[k] for r in runs) for k in runs[0] if k.startswith("max weight")}
        print(
            f"target {target.name}: truth {truth:.5f} (on-policy rollouts {rollout:.5f} +- {rollout_se:.5f}); "
            + "; ".join(f"{k} {v:.1f}" for k, v in max_weights.items())
        )
        print(
            f"  {'estimator':<13} {'mean':>9} {'bias':>9} {'exact bias':>10} {'std':>9} {'bias^2':>10} "
            f"{'variance':>10} {'MSE':>10} {'RMSE/V':>7}"
        )
        summary = {}
        for name in names:
            exact_bias = 0.0 if name == "IPS" else None  # IPS is unbiased under full support
            if name.startswith("MIPS("):
                m = [e.tag for e in embeddings].index(name[4:])
                exact_bias = float(mips_expectations[t, m]) - truth
            summary[name] = row = _summary(np.array([r[name] for r in runs]), truth, exact_bias)
            exact = "" if exact_bias is None else f"{exact_bias:+.5f}"
            print(
                f"  {name:<13} {row['mean']:>9.5f} {row['bias']:>+9.5f} {exact:>10} {row['std']:>9.5f} "
                f"{row['bias2']:>10.3e} {row['variance']:>10.3e} {row['mse']:>10.3e} "
                f"{np.sqrt(row['mse']) / truth:>7.3f}"
            )
        for name in names:
            if name.startswith("MIPS"):
                gap = summary[name]["mse"] - summary["IPS"]["mse"]
                print(
                    f"  {name} MSE - IPS MSE: {gap:+.3e} +- {_paired_se(runs, name, 'IPS', truth):.1e} "
                    "(paired standard error over the logs)"
                )
        results.append(
            {
                "target": target.name,
                "truth": truth,
                "rollout_truth": rollout,
                "rollout_se": rollout_se,
                "estimators": summary,
                "max_weights": max_weights,
                "mips_vs_ips": {
                    name: {
                        "mips_mse": summary[name]["mse"],
                        "ips_mse": summary["IPS"]["mse"],
                        "mips_below_ips": summary[name]["mse"] < summary["IPS"]["mse"],
                        "difference_se": _paired_se(runs, name, "IPS", truth),
                    }
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
        "embeddings": {
            "MIPS" + e.tag: {
                "name": e.name,
                "values": e.n_values,
                "used_values": int((np.bincount(e.of_item, minlength=e.n_values) > 0).sum()),
                "direct_effect": float(d),
            }
            for e, d in zip(embeddings, direct_effect, strict=True)
        },
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
