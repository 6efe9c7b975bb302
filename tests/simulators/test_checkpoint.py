"""Save -> load -> identical predictions; damaged or mismatched checkpoints are refused clearly."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from recsim_env.data import LoggedInteractions
from recsim_env.errors import CheckpointError, DataError


def _predictions(simulator):
    rng = np.random.default_rng(0)
    users = rng.integers(0, simulator.n_users, size=32)
    start = simulator.initial_state(users, rng.random((32, simulator.n_start_uniforms)))
    slates = rng.integers(0, simulator.n_items, size=(32, 3))
    return simulator.predict(
        start.state.items, start.state.inputs, slates, user_features=start.state.user_features
    )


def test_save_load_gives_identical_predictions(tiny_fit, saved_simulator):
    import simulators

    loaded = simulators.load(saved_simulator)
    before, after = _predictions(tiny_fit.simulator), _predictions(loaded)
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)
    assert loaded.signals == tiny_fit.simulator.signals
    for a, b in zip(tiny_fit.simulator.members, loaded.members):
        np.testing.assert_array_equal(a.temperature.numpy(), b.temperature.numpy())


def _copy(saved, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(saved, target)
    return target


def test_truncated_weights_are_refused_naming_the_file(saved_simulator, tmp_path):
    import simulators

    copy = _copy(saved_simulator, tmp_path)
    weights = copy / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"weights\.safetensors.*truncated"):
        simulators.load(copy)


def test_corrupt_and_missing_files_are_refused(saved_simulator, tmp_path):
    import simulators

    copy = _copy(saved_simulator, tmp_path)
    data = bytearray((copy / "start_pool.safetensors").read_bytes())
    data[200] ^= 0xFF
    (copy / "start_pool.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"start_pool\.safetensors.*SHA-256"):
        simulators.load(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(DataError, match="manifest.json"):
        simulators.load(copy)
    with pytest.raises(CheckpointError, match="no such directory"):
        simulators.load(tmp_path / "nowhere")


def test_catalogue_mismatch_is_refused(saved_simulator, world_logs):
    import simulators

    simulators.load(saved_simulator, data=world_logs)  # the same catalogue: fine
    frame = world_logs.frame[world_logs.frame["item_id"] >= 10]
    other = LoggedInteractions.from_frame(frame, feedback_cols=world_logs.feedback_columns)  # only seen items
    assert other.n_items != world_logs.n_items
    with pytest.raises(DataError, match=r"item_ids\.json.*catalogue mismatch"):
        simulators.load(saved_simulator, data=other)


def test_unknown_config_key_is_refused(saved_simulator, tmp_path, rehash):
    import simulators

    copy = _copy(saved_simulator, tmp_path)
    config = json.loads((copy / "config.json").read_text())
    config["learning_rte"] = 0.1
    (copy / "config.json").write_text(json.dumps(config))
    rehash(copy)
    with pytest.raises(CheckpointError, match=r"config\.json.*learning_rte"):
        simulators.load(copy)


def _legacy_pool(pool) -> dict:
    """A start pool's arrays as simulator formats 1 and 2 saved them: NaN where the return gap is unknown,
    no `return_gap_known`."""
    arrays = pool._asdict()
    known = arrays.pop("return_gap_known")
    arrays["return_gap"] = np.where(known, arrays["return_gap"], np.nan).astype(np.float32)
    return arrays


def _assert_pools_equal(a, b):
    for name, x, y in zip(a._fields, a, b, strict=True):
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)


def _write_format_1(simulator, directory, *, drop_config=(), drop_schema=(), drop_weights=(), drop_pool=()):
    """A simulator directory as format 1 wrote it (torch.save weights, an .npz pool, manifest v1)."""
    import hashlib
    import io

    import torch

    directory.mkdir(parents=True)
    config = {k: v for k, v in simulator.config.to_dict().items() if k not in drop_config}
    schema = {k: v for k, v in simulator.schema.to_dict().items() if k not in drop_schema}
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "schema.json").write_text(json.dumps(schema))
    (directory / "item_ids.json").write_text(json.dumps(list(simulator.item_tokens)))
    weights = {
        f"member_{k}": {n: v for n, v in m.state_dict().items() if n not in drop_weights}
        for k, m in enumerate(simulator.members)
    }
    buffer = io.BytesIO()
    torch.save(weights, buffer)
    (directory / "weights.pt").write_bytes(buffer.getvalue())
    pool = {k: v for k, v in _legacy_pool(simulator.start_pool).items() if k not in drop_pool}
    np.savez(directory / "start_pool.npz", **pool)
    files = {
        name: {"bytes": (directory / name).stat().st_size, "sha256": hashlib.sha256((directory / name).read_bytes()).hexdigest()}
        for name in ("config.json", "schema.json", "item_ids.json", "weights.pt", "start_pool.npz")
    }
    (directory / "manifest.json").write_text(json.dumps({"format_version": 1, "files": files}))
    return directory


def test_a_format_1_simulator_is_refused_with_the_convert_command(tiny_fit, tmp_path):
    import simulators

    directory = _write_format_1(tiny_fit.simulator, tmp_path / "old")
    with pytest.raises(CheckpointError, match=r"format_version 1.*seqrec convert"):
        simulators.load(directory)


def test_a_simulator_saved_before_feature_tables_and_platt_scaling_converts_and_loads(world_logs, tmp_path):
    """Format-1 checkpoints written before simulators read users / items tables, pooled clicks or had an
    interest filter or a window stride, and before calibration had a bias, lack those keys, weights and
    arrays: `seqrec convert` turns them into today's format; they read no features and predict as before."""
    import simulators
    from agents.convert import convert
    from tests.simulators.conftest import TINY

    settings = {
        "user_features": False,
        "item_features": False,
        "click_pooling": False,
        "interest_filter": False,
    }
    config = simulators.SimulatorConfig(**TINY, **settings, window_stride=None)
    fitted = simulators.fit(world_logs, config).simulator
    directory = _write_format_1(
        fitted,
        tmp_path / "old",
        drop_config=(*settings, "window_stride"),
        drop_schema=("user_features", "item_features"),
        drop_weights=("calibration_bias",),
        drop_pool=("user_features",),
    )
    where, what = convert(directory)
    assert where == directory and what == "simulator"
    assert not (directory / "weights.pt").exists()

    loaded = simulators.load(directory)
    assert not loaded.config.user_features and not loaded.config.item_features
    assert not loaded.config.interest_filter and loaded.config.window_stride is None
    assert loaded.n_user_features == 0 and loaded.schema.item_features.width == 0
    assert float(loaded.members[0].calibration_bias.abs().sum()) == 0.0
    fitted.members[0].calibration_bias.zero_()  # what the old checkpoint had
    before, after = _predictions(fitted), _predictions(loaded)
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)
    _assert_pools_equal(fitted.start_pool, loaded.start_pool)  # the NaN gaps read as the mask


def _rewrite(directory, metadata, schema_drop=()):
    """Rewrite a saved simulator's manifest with `metadata` (and its schema without `schema_drop`), as an
    older or newer version would have saved it."""
    from recsim_env.checkpoint import write_manifest

    schema = json.loads((directory / "schema.json").read_text())
    kept = {k: v for k, v in schema.items() if k not in schema_drop}
    (directory / "schema.json").write_text(json.dumps(kept))
    write_manifest(directory, "simulator", metadata)
    return directory


def test_the_manifest_records_the_simulator_format(saved_simulator):
    from simulators.checkpoint import FORMAT

    manifest = json.loads((saved_simulator / "manifest.json").read_text())
    assert manifest["metadata"]["simulator_format"] == FORMAT == 3


def test_an_older_simulator_format_is_refused_and_converted_by_seqrec_convert(tiny_fit, tmp_path):
    """A simulator saved before the simulator format was recorded (format 1) is refused with the command
    that converts it; converted, it predicts as it did (format 1 also read a missing feature spec as none)."""
    import simulators
    from agents.convert import convert

    directory = _rewrite(simulators.save(tiny_fit.simulator, tmp_path / "old"), {"ensemble_size": 2})
    with pytest.raises(CheckpointError, match=r"simulator format 1.*seqrec convert"):
        simulators.load(directory)
    where, what = convert(directory)
    assert (where, what) == (directory, "simulator")
    loaded = simulators.load(directory)
    rng = np.random.default_rng(0)
    start = tiny_fit.simulator.initial_state(rng.integers(0, 20, 8), rng.random((8, 1))).state
    slates = rng.integers(0, tiny_fit.simulator.n_items, (8, 2))
    args = (start.items, start.inputs, slates, -1, start.user_features)
    np.testing.assert_array_equal(tiny_fit.simulator.predict(*args)["click"], loaded.predict(*args)["click"])
    with pytest.raises(CheckpointError, match="already in the current format"):
        convert(directory)


def test_a_format_2_start_pool_with_nan_gaps_converts_to_the_mask(tiny_fit, tmp_path):
    """Simulator format 2 marked an unknown return gap with NaN and had no `return_gap_known`: such a
    simulator loads as it is, and converts, to the pool it was saved from."""
    import simulators
    from agents.convert import convert
    from recsim_env.checkpoint import tensors_from_bytes, write_tensors

    pool = tiny_fit.simulator.start_pool
    assert pool.return_gap_known.any() and not pool.return_gap_known.all()
    directory = simulators.save(tiny_fit.simulator, tmp_path / "v2")
    write_tensors(directory / "start_pool.safetensors", _legacy_pool(pool))
    _rewrite(directory, {"simulator_format": 2, "ensemble_size": 2})
    _assert_pools_equal(pool, simulators.load(directory).start_pool)
    convert(directory)
    _assert_pools_equal(pool, simulators.load(directory).start_pool)
    saved = tensors_from_bytes((directory / "start_pool.safetensors").read_bytes())
    assert np.isfinite(saved["return_gap"]).all() and saved["return_gap_known"].dtype == np.bool_


def test_a_newer_simulator_format_and_a_missing_schema_field_are_refused(tiny_fit, tmp_path):
    import simulators

    newer = _rewrite(simulators.save(tiny_fit.simulator, tmp_path / "newer"), {"simulator_format": 99})
    refusal = r"manifest\.json: simulator format 99; this version .* reads format 3"
    with pytest.raises(CheckpointError, match=refusal):
        simulators.load(newer)
    partial = simulators.save(tiny_fit.simulator, tmp_path / "partial")
    _rewrite(partial, {"simulator_format": 3, "ensemble_size": 2}, schema_drop=("item_features",))
    with pytest.raises(CheckpointError, match=r"schema\.json: missing field 'item_features'"):
        simulators.load(partial)


def test_a_config_without_a_time_limit_saves_and_loads(tiny_fit, tmp_path):
    """`max_train_minutes=inf` (no limit) is valid; JSON has no inf, so it must still round-trip."""
    import dataclasses

    import simulators

    unlimited = dataclasses.replace(tiny_fit.simulator.config, max_train_minutes=float("inf"))
    original = tiny_fit.simulator.config
    tiny_fit.simulator.config = unlimited
    try:
        path = simulators.save(tiny_fit.simulator, tmp_path / "sim")
    finally:
        tiny_fit.simulator.config = original
    assert json.loads((path / "config.json").read_text())["max_train_minutes"] == {"__float__": "inf"}
    assert simulators.load(path).config.max_train_minutes == float("inf")
