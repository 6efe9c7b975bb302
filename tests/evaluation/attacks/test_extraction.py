"""Few-shot model extraction: the oracle, the metric, the losses, a whole run and `seqrec attack extract`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import typer
from typer.testing import CliRunner

from evaluation.attacks.extraction import distillation_extraction, overlap_at_k, run_extraction, split_users
from evaluation.attacks.extraction_augment import generate_augmented
from evaluation.attacks.extraction_cli import extract_command
from evaluation.attacks.extraction_config import ExtractionConfig
from evaluation.attacks.extraction_losses import bidirectional_repair_loss, ranking_distillation_loss
from evaluation.attacks.extraction_victim import QueryBudgetError, QueryRecords, VictimOracle, top_k_lists
from recsim_env import encoders
from recsim_env.data import LoggedInteractions
from recsim_env.encoders.trainer import TrainerConfig, seed_everything, train
from recsim_env.errors import ArgumentError

N_ITEMS = 40
TINY = {
    "list_k": 10,
    "max_len": 8,
    "d_model": 16,
    "epochs": 3,
    "sampler_epochs": 2,
    "budget": 120,
    "device": "cpu",
    "num_threads": 1,
    "progress": False,
}


def walk_frame(n_users: int = 60, seed: int = 0) -> pd.DataFrame:
    """Users walk a cycle of 40 items (item i is followed by i + 1 or, one time in four, i + 2), for
    8 to 14 steps."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        item = int(rng.integers(N_ITEMS))
        for t in range(8 + u % 7):
            rows.append((f"u{u}", 100 + item, 1_000_000 + 3600 * t + u))
            item = (item + (2 if rng.random() < 0.25 else 1)) % N_ITEMS
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


@pytest.fixture(autouse=True)
def single_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def logs() -> LoggedInteractions:
    return LoggedInteractions.from_frame(walk_frame())


@pytest.fixture(scope="module")
def victim(logs):
    torch.set_num_threads(1)
    seed_everything(0)
    encoder = encoders.build("sasrec", {"n_items": logs.n_items, "max_len": 8, "d_model": 16})
    train(
        encoder,
        logs.sequences(),
        TrainerConfig(epochs=4, lr=5e-3, batch_size=32, device="cpu", progress=False),
    )
    return encoder.eval()


@pytest.fixture(scope="module")
def victim_dir(victim, logs, tmp_path_factory):
    directory = tmp_path_factory.mktemp("victim") / "ckpt"
    encoders.save(directory, victim, item_ids=logs.item_ids, user_ids=logs.user_ids)
    return directory


# ---------------------------------------------------------------------------------------------- oracle
def test_oracle_counts_queries_and_refuses_past_the_budget(victim):
    oracle = VictimOracle(victim, budget=5, list_k=10)
    histories = [np.array([0, 1, 2]), np.array([5]), np.array([7, 8])]
    lists = oracle.query(histories)
    assert lists.shape == (3, 10) and oracle.queries_used == 3 and oracle.queries_left == 2
    assert not set(lists[0]) & {0, 1, 2}, "the victim serves unseen items only"
    np.testing.assert_array_equal(lists, top_k_lists(victim, histories, k=10))
    with pytest.raises(QueryBudgetError, match="3 queries asked, 2 of 5 left"):
        oracle.query(histories)
    assert oracle.queries_used == 3, "a refused batch is not answered, nor counted"
    oracle.query(histories[:2])
    assert oracle.queries_left == 0
    with pytest.raises(QueryBudgetError):
        oracle.query([np.array([3])])
    with pytest.raises(ArgumentError, match="outside the catalogue"):
        VictimOracle(victim, budget=1, list_k=10).query([np.array([N_ITEMS])])


def test_augmentation_spends_the_budget_and_keeps_every_pair(victim, logs):
    from evaluation.attacks.extraction_augment import fit_determinant, sampler_states, train_sampler

    config = ExtractionConfig(fraction=0.2, **TINY)
    data = split_users(logs, config.fraction, seed=0)
    device = torch.device("cpu")
    sampler = train_sampler(data.sequences, data.n_items, config, device)
    states = sampler_states(sampler, [s[:3] for s in data.histories], device)
    determinant = fit_determinant(states, torch.tensor([i % 2 for i in range(len(data.histories))]))
    oracle = VictimOracle(victim, budget=37, list_k=10)
    records = generate_augmented(
        oracle,
        sampler,
        determinant,
        data.histories,
        n_queries=37,
        steps=3,
        temperature=1.0,
        rng=np.random.default_rng(0),
        generator=torch.Generator().manual_seed(0),
        device=device,
    )
    assert len(records) == 37 and oracle.queries_left == 0
    for history, served in zip(records.histories(), records.lists, strict=True):
        assert 1 <= history.size <= 13 + 3 and not set(served) & set(history)
        grown_from_real = (
            np.array_equal(history[: history.size - j], real[: history.size - j])
            for real in data.histories
            for j in range(0, 4)
            if history.size - j >= 1
        )
        assert any(grown_from_real), "each branch is a real prefix with at most `steps` items grown onto it"
    np.testing.assert_array_equal(records.lists, top_k_lists(victim, records.histories(), k=10))


def test_distillation_spends_the_whole_budget_past_the_real_prefixes(victim, logs):
    config = ExtractionConfig(fraction=0.05, **{**TINY, "epochs": 1})
    data = split_users(logs, config.fraction, seed=0)
    prefixes = sum(len(s) - 1 for s in data.histories)
    oracle = VictimOracle(victim, budget=prefixes + 20, list_k=10)
    result = distillation_extraction(oracle, data, config, device=torch.device("cpu"))
    assert oracle.queries_left == 0 and result.records == prefixes + 20


# ---------------------------------------------------------------------------------------------- metric and losses
def test_overlap_at_k_on_a_hand_case():
    victim = np.array([[1, 2, 3, 9], [4, 5, 6, 9]])
    surrogate = np.array([[2, 1, 8, 3], [7, 8, 4, 5]])
    assert overlap_at_k(victim, surrogate, k=3) == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert overlap_at_k(victim, victim, k=4) == 1.0
    with pytest.raises(ArgumentError, match="at least k=5"):
        overlap_at_k(victim, surrogate, k=5)


def test_repair_loss_raises_missed_items_and_lowers_unlisted_intruders():
    # victim list [0, 1, 2] (top-2 = {0, 1}); the surrogate's top-2 is {3, 0}: item 1 is missed, item 3
    # intrudes and is not listed at all.
    scores = torch.tensor([[2.0, -1.0, 0.5, 3.0, -2.0, -3.0]], requires_grad=True)
    lists = torch.tensor([[0, 1, 2]])
    seen = torch.zeros(1, 6, dtype=torch.bool)
    loss = bidirectional_repair_loss(scores, lists, seen, k=2, margin=0.5)
    # raise item 1 above t_S = 2.0 (the surrogate's 2nd best): 2.0 + 1.0 + 0.5; lower item 3 below
    # t_V = -1.0 (the surrogate's lowest score over the victim's top-2): 3.0 + 1.0 + 0.5; over k = 2
    assert float(loss.detach()) == pytest.approx((3.5 + 4.5) / 2)
    loss.backward()
    assert scores.grad[0, 1] < 0, "descent raises the item the surrogate misses"
    assert scores.grad[0, 3] > 0, "descent lowers the surrogate's unlisted intruder"
    assert torch.count_nonzero(scores.grad) == 2, "the thresholds are constants; no other item moves"


def test_repair_loss_spares_listed_items_and_history_and_vanishes_on_agreement():
    lists = torch.tensor([[0, 1, 2]])
    seen = torch.zeros(1, 6, dtype=torch.bool)
    listed_intruder = torch.tensor([[2.0, -1.0, 3.0, -5.0, -2.0, -3.0]], requires_grad=True)  # top-2 {2, 0}
    bidirectional_repair_loss(listed_intruder, lists, seen, k=2, margin=0.5).backward()
    assert listed_intruder.grad[0, 2] == 0, "item 2 is on the victim's list: the ranking loss orders it"
    assert listed_intruder.grad[0, 1] < 0
    seen_top = torch.tensor([[2.0, 1.0, 0.5, 9.0, -2.0, -3.0]], requires_grad=True)  # item 3 seen
    loss = bidirectional_repair_loss(
        seen_top, lists, torch.tensor([[False, False, False, True, False, False]]), k=2, margin=0.5
    )
    assert float(loss.detach()) == 0.0, "a seen item is never served, so it is not an intruder"
    agreeing = torch.tensor([[2.0, 1.0, 0.5, -1.0, -2.0, -3.0]], requires_grad=True)
    assert float(bidirectional_repair_loss(agreeing, lists, seen, k=2, margin=0.5).detach()) == 0.0


def test_ranking_distillation_loss_on_a_hand_case():
    scores = torch.tensor([[3.0, 1.0, 2.0, 0.0]])
    # order term: pairs (0, 2): 2 - 3 + 0.5 -> 0; (2, 1): 1 - 2 + 0.5 -> 0;  negatives 3, 3 against 0, 2, 1:
    loss = ranking_distillation_loss(
        scores, torch.tensor([[0, 2, 1]]), torch.tensor([[3, 3, 3]]), margin_topk=0.5, margin_negative=1.5
    )
    assert float(loss) == pytest.approx(0.0 + (0.0 + 0.0 + 0.5) / 3)
    reversed_order = ranking_distillation_loss(
        scores, torch.tensor([[1, 2, 0]]), torch.tensor([[3, 3, 3]]), margin_topk=0.5, margin_negative=0.0
    )
    assert float(reversed_order) == pytest.approx((1.5 + 1.5) / 2)


def test_the_signifier_learns_when_users_follow_the_list():
    from evaluation.attacks.extraction_augment import fit_determinant

    states = torch.randn(400, 4, generator=torch.Generator().manual_seed(0))
    follows = states[:, 0] > 0.3  # users with a high first feature follow the served list
    determinant = fit_determinant(states, follows)
    with torch.no_grad():
        predicted = determinant(states) > 0.5
    assert float((predicted == follows).float().mean()) > 0.9


def test_query_records_round_trip():
    records = QueryRecords.from_histories([np.array([1, 2]), np.array([3])], np.array([[5, 6], [7, 8]]))
    both = QueryRecords.concat([records, records])
    assert len(both) == 4 and [h.tolist() for h in both.histories([1, 2])] == [[3], [1, 2]]


# ---------------------------------------------------------------------------------------------- a whole run
def test_a_run_is_reproducible_per_seed_and_measures_both_adversaries(victim, logs):
    config = ExtractionConfig(fraction=0.1, budget_curve=(60,), seed=3, **TINY)

    def figures(result):
        summary = result.summary()
        del summary["seconds"]
        for point in summary["budget_curve"]:
            for method in ("few_shot", "distillation"):
                del point[method]["train_seconds"]
        return summary

    first, second = (
        figures(run_extraction(victim, logs, config)),
        figures(run_extraction(victim, logs, config)),
    )
    assert first == second
    assert [p["budget"] for p in first["budget_curve"]] == [60, 120]
    for point in first["budget_curve"]:
        for method in ("few_shot", "distillation"):
            assert point[method]["queries_used"] == point["budget"]
            assert 0.0 <= point[method]["overlap10"] <= 1.0
    assert first["users"]["few_shot"] == 6 and first["users"]["held_out"] == 54


# ---------------------------------------------------------------------------------------------- the command
runner = CliRunner()


def app() -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def attack() -> None:
        """Attacks."""

    root.command("extract")(extract_command)
    return root


def tiny_options() -> list[str]:
    return [
        "--list-k", "10", "--max-len", "8", "--d-model", "16", "--epochs", "2", "--sampler-epochs", "2",
        "--device", "cpu", "--threads", "1", "--no-progress",
    ]  # fmt: skip


def test_extract_command_writes_the_report_and_the_surrogate(victim_dir, logs, tmp_path):
    csv = tmp_path / "walk.csv"
    walk_frame().to_csv(csv, index=False)
    out = tmp_path / "report"
    args = [
        "extract",
        "--victim",
        str(victim_dir),
        "--data",
        str(csv),
        "--out",
        str(out),
        "--fraction",
        "0.1",
    ]
    result = runner.invoke(
        app(), [*args, "--budget", "80", "--budget-curve", "[40]", "--seed", "1", *tiny_options()]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert {"overlap10_surrogate", "overlap10_distillation", "accuracy", "budget_curve"} <= set(report)
    assert report["overlap10_surrogate"] == report["budget_curve"][1]["few_shot"]["overlap10"]
    assert set(report["accuracy"]) == {"victim", "surrogate", "distillation"}
    assert "overlap@10 with the victim" in (out / "report.md").read_text()
    for name in ("budget_curve.png", "accuracy.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    surrogate = encoders.load_checkpoint(out / "surrogate", item_ids=logs.item_ids)
    assert surrogate.encoder.n_items == N_ITEMS
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "no temporaries left behind"
    assert (
        json.loads(result.output.splitlines()[-1])["overlap10_distillation"]
        == report["overlap10_distillation"]
    )


@pytest.mark.parametrize("fraction", ["0", "1", "1.5"])
def test_extract_command_refuses_a_fraction_outside_zero_one(victim_dir, tmp_path, fraction):
    args = ["extract", "--victim", str(victim_dir), "--data", "x.csv", "--out", str(tmp_path / "o")]
    result = runner.invoke(app(), [*args, "--fraction", fraction])
    assert result.exit_code == 2 and "ExtractionConfig.fraction must lie in (0, 1)" in result.output
    assert not (tmp_path / "o").exists()


def test_extract_command_refuses_a_budget_below_one(victim_dir, tmp_path):
    args = ["extract", "--victim", str(victim_dir), "--data", "x.csv", "--out", str(tmp_path / "o")]
    result = runner.invoke(app(), [*args, "--budget", "0"])
    assert result.exit_code == 2 and "ExtractionConfig.budget must be at least 1" in result.output


def test_extract_command_refuses_a_victim_of_another_catalogue(victim_dir, tmp_path):
    other = tmp_path / "other.csv"
    frame = walk_frame()
    frame.loc[0, "item_id"] = 999  # one item the victim has never seen
    frame.to_csv(other, index=False)
    out = tmp_path / "o"
    result = runner.invoke(
        app(), ["extract", "--victim", str(victim_dir), "--data", str(other), "--out", str(out)]
    )
    assert result.exit_code == 1 and "catalogue mismatch" in result.output
    assert not out.exists()


def test_extract_command_refuses_a_missing_victim(tmp_path):
    result = runner.invoke(
        app(),
        ["extract", "--victim", str(tmp_path / "nope"), "--data", "x.csv", "--out", str(tmp_path / "o")],
    )
    assert result.exit_code == 1 and "no such checkpoint directory" in result.output


def test_extraction_cli_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, evaluation.attacks.extraction_cli; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
