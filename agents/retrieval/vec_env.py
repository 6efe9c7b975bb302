"""`RetrievalVecEnv`: `RetrievalEnv`'s actions and observations for a whole SB3 `VecEnv` at once.

The one batched retrieval per step (a `[B, D] @ [D, n_items]` matmul and a top-k) reads the item
table once for all B users, where B single `RetrievalEnv`s would read it B times. It wraps an SB3
`VecEnv` of plain `SeqRec-v0` envs (`Discrete(n_items)`, or `MultiDiscrete` slates of K), maps each
sub-env's candidate index to its item, and converts the raw observations (and the
`terminal_observation` SB3 keeps in `info` at an episode end, for bootstrapping a truncated
episode's value) to the ranker's.

With a `scorer` (the ranker being trained, `LiveScorer`) a learned query retrieves the candidates,
and slates of K > 1 take the chosen candidate first, then the other candidates by the scorer's scores
(`fill_slates`; without a scorer, by retrieval score). The RL action is the first position only.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from agents.retrieval.candidates import CandidateGenerator, fill_slates
from agents.retrieval.ranker import LiveScorer
from recsim_env.errors import ArgumentError


def slate_size_of(space: spaces.Space, n_items: int) -> int:
    """K of a `SeqRec-v0` action space over `n_items` items (`Discrete` or `MultiDiscrete`)."""
    if isinstance(space, spaces.Discrete) and int(space.n) == n_items:
        return 1
    if isinstance(space, spaces.MultiDiscrete) and space.nvec.ndim == 1 and (space.nvec == n_items).all():
        return len(space.nvec)
    raise ArgumentError(f"needs Discrete({n_items}) or MultiDiscrete([{n_items}] * K) actions, got {space}")


def candidate_scores(ranker_obs: dict[str, np.ndarray], scorer: LiveScorer | None, dim: int) -> np.ndarray:
    """`[B, k]` the order slates are filled in: the scorer's scores, else the retrieval score column."""
    if scorer is not None:
        return scorer.scores(ranker_obs)
    return ranker_obs["candidates"][..., dim]


class RetrievalVecEnv(VecEnvWrapper):
    """Candidate-index actions `[B]` over a `VecEnv` of `SeqRec-v0` users, one batched retrieval per step.

    Args:
        venv: an SB3 `VecEnv` whose sub-envs are `SeqRecEnv`s over the generator's catalogue.
        generator: the retrieval stage.
        scorer: the ranker's query and scores (a learned query, the order of a slate's other items).
        flat: give the observation as one Box (`agents.retrieval.dqn.flatten_observation`) for SB3's
            n-step replay buffer.
    """

    def __init__(
        self,
        venv: VecEnv,
        generator: CandidateGenerator,
        scorer: LiveScorer | None = None,
        flat: bool = False,
    ) -> None:
        try:
            self.slate_size = slate_size_of(venv.action_space, generator.n_items)
        except ArgumentError as error:
            raise ArgumentError(f"venv: {error}") from None
        if self.slate_size > generator.distinct_candidates:
            raise ArgumentError(
                f"venv: slates of {self.slate_size} from {generator.distinct_candidates} distinct candidates"
            )
        from agents.retrieval.dqn import flat_space

        space = generator.observation_space
        super().__init__(
            venv,
            observation_space=flat_space(space) if flat else space,
            action_space=spaces.Discrete(generator.n_candidates),
        )
        self.generator = generator
        self.scorer = scorer
        self.flat = flat
        self.candidates = np.zeros((venv.num_envs, generator.n_candidates), np.int64)
        self.ranker_obs: dict[str, np.ndarray] = {}

    def _retrieve(self, obs: dict[str, np.ndarray]):
        query = self.scorer.query if self.scorer is not None and self.scorer.learned_query else None
        ids, ranker_obs = self.generator(obs, query)
        if self.flat:
            from agents.retrieval.dqn import flatten_observation

            return ids, ranker_obs, flatten_observation(ranker_obs)
        return ids, ranker_obs, ranker_obs

    def _observe(self, obs: dict[str, np.ndarray]):
        self.candidates, self.ranker_obs, out = self._retrieve(obs)
        return out

    def reset(self):
        return self._observe(self.venv.reset())

    def step_async(self, actions: np.ndarray) -> None:
        actions = np.asarray(actions, dtype=np.int64).reshape(-1)
        if (
            len(actions) != self.num_envs
            or (actions < 0).any()
            or (actions >= self.candidates.shape[1]).any()
        ):
            raise ArgumentError(
                f"actions must be {self.num_envs} candidate indices in [0, {self.candidates.shape[1]}), got {actions}"
            )
        self.items = self.candidates[np.arange(self.num_envs), actions]
        if self.slate_size == 1:
            self.venv.step_async(self.items)
            return
        scores = candidate_scores(self.ranker_obs, self.scorer, self.generator.dim)
        self.slates = fill_slates(self.candidates, actions, scores, self.slate_size)
        self.venv.step_async(self.slates)

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        ended = [i for i, info in enumerate(infos) if "terminal_observation" in info]
        if ended:
            terminal = {
                key: np.stack([infos[i]["terminal_observation"][key] for i in ended])
                for key in infos[ended[0]]["terminal_observation"]
            }
            _, _, ranker_terminal = self._retrieve(terminal)
            for row, i in enumerate(ended):
                infos[i]["terminal_observation"] = (
                    ranker_terminal[row]
                    if self.flat
                    else {key: value[row] for key, value in ranker_terminal.items()}
                )
        for i, info in enumerate(infos):
            info["item"] = int(self.items[i])
            if self.slate_size > 1:
                info["slate"] = self.slates[i]
        return self._observe(obs), rewards, dones, infos
