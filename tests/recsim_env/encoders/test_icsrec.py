"""ICSRec's objective: same-target pairs within a batch, the masked InfoNCE, the online k-means intents,
and that with both contrastive weights at 0 it is SASRec exactly."""

from __future__ import annotations

import math

import pytest
import torch

from recsim_env import encoders
from recsim_env.encoders.base import IGNORE_TARGET
from recsim_env.encoders.icsrec import ICSRecConfig, masked_info_nce, same_target_pairs

N_ITEMS = 30
MAX_LEN = 12


def build(name: str, **overrides):
    torch.manual_seed(0)
    return encoders.build(name, {"n_items": N_ITEMS, "max_len": MAX_LEN, "d_model": 16, **overrides})


def windows(rows: int = 16, seed: int = 0) -> torch.Tensor:
    """`[rows, MAX_LEN + 1]` random windows with some left padding, items drawn from a few so that
    targets repeat across rows."""
    g = torch.Generator().manual_seed(seed)
    out = torch.randint(0, 8, (rows, MAX_LEN + 1), generator=g)
    out[::3, :4] = N_ITEMS  # some left padding
    return out


def test_same_target_pairs_share_a_target_and_are_distinct_positions():
    targets = torch.tensor([5, 1, 5, 2, 5, 1, 9, 3, 3])
    g = torch.Generator().manual_seed(0)
    anchors, partners = same_target_pairs(targets, 100, generator=g)
    assert torch.equal(targets[anchors], targets[partners])
    assert (anchors != partners).all()
    assert len(set(anchors.tolist())) == len(anchors)  # without replacement
    # every position whose target repeats anchors (rows is large); the singletons 2 and 9 never appear
    assert sorted(anchors.tolist()) == [0, 1, 2, 4, 5, 7, 8]
    assert not set(partners.tolist()) & {3, 6}
    few, _ = same_target_pairs(targets, 3, generator=g)
    assert len(few) == 3
    assert same_target_pairs(torch.tensor([0, 1, 2]), 10, generator=g) is None


def test_same_target_partners_are_drawn_among_all_others_of_the_group():
    targets = torch.tensor([4, 4, 4, 4])
    seen = set()
    g = torch.Generator().manual_seed(1)
    for _ in range(50):
        anchors, partners = same_target_pairs(targets, 1, generator=g)
        seen.add((int(anchors), int(partners)))
    assert all(a != p for a, p in seen)
    assert len(seen) == 12  # every ordered pair of distinct positions


def reference_info_nce(anchors, positives, labels, temperature):
    """The loss written out view by view: -log e^{s(v, v+)} / (e^{s(v, v+)} + sum_{labels differ} e^{s(v, u)})."""
    views = torch.cat([anchors, positives])
    both = torch.cat([labels, labels])
    r = len(anchors)
    losses = []
    for i in range(2 * r):
        j = i + r if i < r else i - r
        positive = views[i] @ views[j] / temperature
        negatives = [views[i] @ views[u] / temperature for u in range(2 * r) if both[u] != both[i]]
        denominator = torch.logsumexp(torch.stack([positive, *negatives]), 0)
        losses.append(denominator - positive)
    return torch.stack(losses).mean()


def test_masked_info_nce_matches_the_written_out_loss():
    g = torch.Generator().manual_seed(0)
    a, p = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    labels = torch.tensor([0, 1, 0, 2, 1])
    for temperature in (1.0, 0.5):
        torch.testing.assert_close(
            masked_info_nce(a, p, labels, temperature), reference_info_nce(a, p, labels, temperature)
        )
    # all labels equal: no negatives, each view's only logit is its positive
    assert float(masked_info_nce(a, p, torch.zeros(5, dtype=torch.long), 1.0)) == pytest.approx(0.0, abs=1e-6)


def test_with_both_weights_zero_the_loss_and_states_are_sasrec():
    sasrec = build("sasrec").train()
    icsrec = build("icsrec", cicl_weight=0.0, ficl_weight=0.0).train()
    icsrec.load_state_dict(sasrec.state_dict())  # the intents are not in the state dict
    assert set(icsrec.state_dict()) == set(sasrec.state_dict())
    ids = windows()
    batch = sasrec.training_batch(ids, None, None)
    torch.manual_seed(3)
    expected = sasrec.loss(batch)
    torch.manual_seed(3)
    torch.testing.assert_close(icsrec.loss(batch), expected)
    icsrec.eval(), sasrec.eval()
    torch.testing.assert_close(icsrec.user_state(ids[:, 1:]), sasrec.user_state(ids[:, 1:]))


@pytest.mark.parametrize("term", ("cicl_weight", "ficl_weight"))
def test_each_contrastive_term_adds_to_the_loss_and_has_gradients(term):
    off = {"cicl_weight": 0.0, "ficl_weight": 0.0}
    plain = build("icsrec", **off).eval()
    with_term = build("icsrec", **{**off, term: 1.0, "n_intents": 4}).eval()  # eval: same dropout (none)
    with_term.load_state_dict(plain.state_dict())
    batch = plain.training_batch(windows(), None, None)
    g = torch.Generator().manual_seed(0)
    base = plain.loss(batch, generator=g)
    value = with_term.loss(batch, generator=torch.Generator().manual_seed(0))
    value_, base_ = float(value.detach()), float(base.detach())
    assert math.isfinite(value_) and value_ > base_  # an InfoNCE term with negatives is > 0
    value.backward()
    assert with_term.item_embedding.weight.grad.abs().sum() > 0


def test_online_kmeans_finds_separated_clusters_and_follows_the_ema_update():
    enc = build("icsrec", d_model=2, n_intents=2, intent_momentum=0.5)
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[10.0, 0.0], [-10.0, 0.0]])
    points = torch.cat(
        [
            centres[0] + 0.1 * torch.randn(20, 2, generator=g),
            centres[1] + 0.1 * torch.randn(20, 2, generator=g),
        ]
    )
    enc.start_intents(points[[0, 39]], generator=g)  # one start in each cluster
    assert bool(enc.intents_started)
    before = enc.intent_centroids.clone()
    enc.update_intents(points, generator=g)
    # first step: running count 0, so each centroid moves to the mean of its points
    torch.testing.assert_close(enc.intent_centroids[0], points[:20].mean(0))
    torch.testing.assert_close(enc.intent_centroids[1], points[20:].mean(0))
    torch.testing.assert_close(enc.intent_counts, torch.tensor([10.0, 10.0]))  # (1 - m) * 20
    # a second step with one point of cluster 0: the EMA of the formula, cluster 1 untouched
    moved = before[0]
    enc.update_intents(moved[None], generator=g)
    expected = (0.5 * 10.0 * points[:20].mean(0) + 0.5 * moved) / (0.5 * 10.0 + 0.5)
    torch.testing.assert_close(enc.intent_centroids[0], expected)
    torch.testing.assert_close(enc.intent_centroids[1], points[20:].mean(0))
    assert torch.equal(enc.assign_intents(centres), torch.tensor([0, 1]))


def test_intents_start_from_the_first_batch_and_move_during_training():
    enc = build("icsrec", n_intents=8).train()
    batch = enc.training_batch(windows(), None, None)
    g = torch.Generator().manual_seed(0)
    enc.loss(batch, generator=g)
    first = enc.intent_centroids.clone()
    assert bool(enc.intents_started) and first.abs().sum() > 0
    enc.loss(enc.training_batch(windows(seed=1), None, None), generator=g)
    assert not torch.equal(enc.intent_centroids, first)


def test_loss_without_any_target_is_zero_and_differentiable():
    enc = build("icsrec").train()
    batch = enc.training_batch(windows(4), None, None)
    empty = batch._replace(targets=torch.full_like(batch.targets, IGNORE_TARGET))
    value = enc.loss(empty)
    assert float(value.detach()) == 0.0
    value.backward()


def test_config_validation():
    with pytest.raises(ValueError, match="temperature"):
        ICSRecConfig(n_items=5, temperature=0.0)
    with pytest.raises(ValueError, match="intent_momentum"):
        ICSRecConfig(n_items=5, intent_momentum=1.0)
    with pytest.raises(ValueError, match="n_intents"):
        ICSRecConfig(n_items=5, n_intents=0)
    with pytest.raises(ValueError, match="cicl_weight"):
        ICSRecConfig(n_items=5, cicl_weight=-0.1)


def test_training_is_reproducible_and_the_checkpoint_round_trips(cyclic_logs, tmp_path):
    from recsim_env.encoders.trainer import TrainerConfig, seed_everything, train

    def run(seed):
        seed_everything(seed)
        enc = encoders.build(
            "icsrec", {"n_items": cyclic_logs.n_items, "max_len": 8, "d_model": 16, "n_intents": 16}
        )
        config = TrainerConfig(epochs=2, batch_size=32, lr=5e-3, seed=seed, progress=False)
        return enc, train(enc, cyclic_logs.sequences(), config)

    enc_a, result_a = run(0)
    enc_b, result_b = run(0)
    assert [h["loss"] for h in result_a.history] == [h["loss"] for h in result_b.history]
    assert torch.equal(enc_a.intent_centroids, enc_b.intent_centroids)
    for (key, a), b in zip(enc_a.state_dict().items(), enc_b.state_dict().values(), strict=True):
        assert torch.equal(a, b), key
    out = encoders.save(tmp_path / "ckpt", enc_a, item_ids=cyclic_logs.item_ids)
    loaded = encoders.load(out)
    assert type(loaded) is type(enc_a) and loaded.config == enc_a.config
    enc_a.eval()
    ids = torch.tensor([[cyclic_logs.n_items, 0, 1, 2, 3, 4, 5, 6]])
    torch.testing.assert_close(loaded.user_state(ids), enc_a.user_state(ids))
