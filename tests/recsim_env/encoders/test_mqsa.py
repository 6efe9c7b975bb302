"""MQSA-TED: L = 1 is SASRec in both towers, the L-query is the mean of the last L positions, the transition
graph holds each training transition once (and no validation or test event), TED matches its formula, and
the graph travels with the checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recsim_env import encoders
from recsim_env.encoders.mqsa import MQSAConfig, transition_distillation_loss, window_mean
from recsim_env.encoders.trainer import TrainerConfig, leave_one_out_split, train, window_tensors
from tests.recsim_env.encoders.conftest import MAX_LEN, N_ITEMS, left_padded, tiny_encoder

build = tiny_encoder


IDS = left_padded([[1, 2, 3], [4, 8, 15, 16, 23, 29, 0, 7], list(range(MAX_LEN))])


@pytest.mark.parametrize("block", ("paper", "reference"))
def test_a_one_item_query_makes_both_towers_sasrec(block):
    sasrec = build("sasrec", block=block)
    mqsa = build("mqsa", block=block, query_window=1, short_weight=0.3)
    shared = {k: v for k, v in sasrec.state_dict().items() if not k.startswith(("blocks.", "final_norm."))}
    for tower, norm in (("short_blocks", "short_norm"), ("long_blocks", "long_norm")):
        shared |= {
            k.replace("blocks.", f"{tower}.", 1): v
            for k, v in sasrec.state_dict().items()
            if k.startswith("blocks.")
        }
        shared |= {
            k.replace("final_norm.", f"{norm}.", 1): v
            for k, v in sasrec.state_dict().items()
            if k.startswith("final_norm.")
        }
    missing, unexpected = mqsa.load_state_dict(shared, strict=False)
    assert not unexpected and all(k.startswith("transitions.") for k in missing)
    torch.testing.assert_close(mqsa(IDS), sasrec(IDS))


def test_the_long_query_is_the_mean_of_the_last_L_real_positions():
    x = torch.randn(2, 6, 4)
    padding = torch.tensor([[False, False, True, True, True, True], [True] * 6])
    x = x * padding.unsqueeze(-1)
    pooled = window_mean(x, padding, 3)
    for b in range(2):
        for t in range(6):
            if not padding[b, t]:
                assert torch.equal(pooled[b, t], torch.zeros(4))
                continue
            real = [s for s in range(max(0, t - 2), t + 1) if padding[b, s]]
            torch.testing.assert_close(pooled[b, t], x[b, real].mean(0))


def test_the_state_is_the_weighted_sum_of_the_towers_and_the_towers_differ():
    enc = build("mqsa", short_weight=0.25)
    with torch.no_grad():
        short, long = enc.tower_states(IDS, None, enc.padding_mask(IDS))
        torch.testing.assert_close(enc(IDS), 0.25 * short + 0.75 * long)
        assert not torch.allclose(short[:, -1], long[:, -1])
        only_short = build("mqsa", short_weight=1.0)
        only_short.load_state_dict(enc.state_dict())
        torch.testing.assert_close(only_short.user_state(IDS), short[:, -1])


def transitions_of(sequences, train_lengths: np.ndarray) -> dict[tuple[int, int], int]:
    counts: dict[tuple[int, int], int] = {}
    for u, n in enumerate(train_lengths):
        items = sequences.item_ids[sequences.offsets[u] : sequences.offsets[u] + n]
        for a, b in zip(items[:-1], items[1:], strict=True):
            counts[int(a), int(b)] = counts.get((int(a), int(b)), 0) + 1
    return counts


@pytest.mark.parametrize("stride", (None, 3, 12))
def test_the_graph_counts_each_training_transition_once_and_nothing_held_out(cyclic_logs, stride):
    sequences = cyclic_logs.sequences()
    enc = encoders.build("mqsa", {"n_items": cyclic_logs.n_items, "max_len": 8, "d_model": 8})
    split = leave_one_out_split(sequences, max_len=8, pad_id=enc.pad_id)
    windows = window_tensors(enc, sequences, split.train_lengths, TrainerConfig(window_stride=stride))
    enc.fit_statistics(windows.items, ~windows.counted_elsewhere)
    expected = transitions_of(sequences, split.train_lengths)
    dense = enc.transitions.rows(torch.arange(cyclic_logs.n_items))
    got = {(int(a), int(b)): int(dense[a, b]) for a, b in torch.nonzero(dense).tolist()}
    assert got == expected
    # the validation and test transitions are not in it (the cyclic data repeat them elsewhere, so count)
    everything = transitions_of(sequences, np.diff(sequences.offsets))
    assert sum(everything.values()) - sum(got.values()) == 2 * len(split.valid.users)


def test_ted_matches_its_formula_once_per_occurrence():
    enc = build("mqsa", dropout=0.0, distillation_weight=0.5, distillation_temperature=0.2).train()
    windows = torch.randint(0, N_ITEMS, (5, MAX_LEN + 1), generator=torch.Generator().manual_seed(3))
    windows[0, :6] = N_ITEMS
    enc.fit_statistics(windows, torch.ones(5, MAX_LEN, dtype=torch.bool))
    batch = enc.training_batch(windows, None, None)
    heads = batch.item_ids[batch.targets != -100]
    table = enc.item_table()
    counts = enc.transitions.rows(heads)  # every head has a successor in these windows
    teacher = F.softmax(counts / counts.amax(-1, keepdim=True) / 0.2, dim=-1)
    logits = table[heads] * 4.0 @ table.T  # sqrt(D) = 4
    student = F.log_softmax(logits / 0.2, dim=-1)
    ted = -(teacher * student).sum(-1).mean()
    rec = encoders.SequenceEncoder.loss(enc, batch)
    torch.testing.assert_close(enc.loss(batch), rec + 0.5 * ted)
    # rows count by their weight; weight 0, or a graph with no transition, is the recommendation loss alone
    weighted = transition_distillation_loss(logits[:2], counts[:2], torch.tensor([1.0, 0.0]), 0.2)
    torch.testing.assert_close(weighted, -(teacher[0] * student[0]).sum())
    off = build("mqsa", dropout=0.0, distillation_weight=0.0).train()
    off.load_state_dict(enc.state_dict())
    torch.testing.assert_close(off.loss(batch), rec)
    enc.fit_statistics(windows, torch.zeros(5, MAX_LEN, dtype=torch.bool))
    assert enc.transitions.n_edges == 0
    torch.testing.assert_close(enc.loss(batch), rec)


def test_ted_reaches_the_item_embeddings_of_the_heads_and_their_successors():
    enc = build("mqsa", dropout=0.0, distillation_weight=1.0).train()
    windows = left_padded([[1, 2, 3]], length=MAX_LEN + 1)
    enc.fit_statistics(windows, torch.ones(1, MAX_LEN, dtype=torch.bool))
    grads = []
    for weight in (0.0, 1.0):
        other = build("mqsa", dropout=0.0, distillation_weight=weight).train()
        other.load_state_dict(enc.state_dict())
        other.loss(other.training_batch(windows, None, None)).backward()
        grads.append(other.item_embedding.weight.grad.clone())
    assert not torch.allclose(grads[0][[1, 2]], grads[1][[1, 2]])  # the heads 1 and 2 (1 -> 2, 2 -> 3)


def test_the_trainer_fits_the_graph_and_the_checkpoint_carries_it(cyclic_logs, tmp_path):
    torch.manual_seed(0)
    enc = encoders.build("mqsa", {"n_items": cyclic_logs.n_items, "max_len": 8, "d_model": 16, "n_layers": 1})
    train(enc, cyclic_logs.sequences(), TrainerConfig(epochs=2, progress=False, num_threads=1))
    # the cyclic data: item i is always followed by item i + 1 (mod N), and nothing else
    assert enc.transitions.n_edges == cyclic_logs.n_items
    out = encoders.save(tmp_path / "ckpt", enc, item_ids=cyclic_logs.item_ids)
    loaded = encoders.load(out)
    for name, buffer in enc.transitions.named_buffers():
        assert torch.equal(getattr(loaded.transitions, name), buffer)
    enc.eval()
    ids = torch.tensor([[cyclic_logs.n_items, 0, 1, 2, 3, 4, 5, 6]])
    torch.testing.assert_close(loaded.user_state(ids), enc.user_state(ids))
    batch = loaded.training_batch(torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7, 8]]), None, None)
    torch.testing.assert_close(loaded.loss(batch), enc.loss(batch))


def test_config_validation():
    for field, value in (("query_window", 0), ("short_weight", 1.5), ("distillation_weight", -0.1)):
        with pytest.raises(ValueError, match=field):
            MQSAConfig(n_items=5, **{field: value})
    with pytest.raises(ValueError, match="distillation_temperature"):
        MQSAConfig(n_items=5, distillation_temperature=0.0)
    with pytest.raises(ValueError, match="unknown config key"):
        encoders.build("mqsa", {"n_items": 5, "alpha": 0.5})
