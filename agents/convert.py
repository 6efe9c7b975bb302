"""`seqrec convert DIR`: turn an artifact saved by an older version (format 1) into today's format.

Format 1 stored tensors with `torch.save` (`weights.pt`, `module_state.pt`), SB3 runs as SB3's own
`model.zip` and DQN replay buffers as plain pickles. The conversion reads only what is safe to read:

* `weights.pt` / `module_state.pt` / a `model.zip`'s `policy.pth` and `policy.optimizer.pth` through
  `torch.load(weights_only=True)`, which refuses any pickled object that is not a tensor or a plain
  container (the code-running payloads of a tampered file are refused, not run);
* `.npz` arrays with `allow_pickle=False`; JSON.

Never read: a `model.zip`'s `data` entry (cloudpickled SB3 attributes), `replay_buffer.pkl` (a DQN
run resumes with an empty buffer) and RLlib's `checkpoint/` (kept as it is, for
`--trust-checkpoint`). Policy kinds of the form `module:Class` are refused. The converted artifact is
written whole and swapped in place of `DIR` (or written to `--out`); files that are not part of the
artifact (logs, reports, metrics) are carried over.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from agents.policy import POLICY_KINDS, POLICY_SUBDIR
from recsim_env.checkpoint import is_artifact, swap_in
from recsim_env.errors import CheckpointError

CARRIED = ("logs", "tensorboard", "metrics.csv", "checkpoint", "fidelity.json", "fidelity.md")
"""Files and folders of an old directory that are copied over unchanged (not part of the artifact)."""
LEGACY_FILES = (
    "policy.json", "checkpoint.json", "config.json", "schema.json", "item_ids.json", "user_ids.json",
    "weights.pt", "module_state.pt", "model.zip", "replay_buffer.pkl", "start_pool.npz", "item_stats.npz",
    "stats.json", "manifest.json", "train_config.json", "progress.json",
)  # fmt: skip


def _json(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; cannot convert {path.parent}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from None


def _tensors(source: Path | bytes, where: Path) -> Any:
    """`torch.load(weights_only=True)`: tensors and plain containers only, never other objects."""
    import torch

    try:
        handle = io.BytesIO(source) if isinstance(source, bytes) else source
        return torch.load(handle, map_location="cpu", weights_only=True)
    except Exception as error:  # an UnpicklingError for a payload; other errors for a damaged file
        raise CheckpointError(f"{where}: refused: not a plain tensor file ({type(error).__name__}: {error})") from None


def _arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return dict(arrays)
    except Exception as error:
        raise CheckpointError(f"{path}: refused: not a plain array archive ({error})") from None


def _zip_member(path: Path, name: str) -> bytes | None:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.read(name) if name in archive.namelist() else None
    except zipfile.BadZipFile as error:
        raise CheckpointError(f"{path}: not a zip archive ({error})") from None


# ---------------------------------------------------------------------------------------------- kinds
def _convert_encoder(src: Path, dst: Path) -> str:
    from recsim_env.encoders.checkpoint import save
    from recsim_env.encoders.registry import build

    meta = _json(src / "checkpoint.json")
    encoder = build(meta["encoder"], _json(src / "config.json"))
    encoder.load_state_dict(_tensors(src / "weights.pt", src / "weights.pt"))
    users = _json(src / "user_ids.json") if (src / "user_ids.json").is_file() else None
    save(dst, encoder, item_ids=_json(src / "item_ids.json"), user_ids=users, metadata=meta.get("metadata", {}))
    return "encoder"


def _convert_simulator(src: Path, dst: Path) -> str:
    import torch

    from simulators.checkpoint import check_start_pool, save, start_pool_of
    from simulators.config import SimulatorConfig
    from simulators.data import DataSchema
    from simulators.ensemble import simulator_of
    from simulators.response_model import ResponseModel

    fields = _json(src / "config.json")
    # Format 1 filled these for simulators saved before the options existed: they did none of them.
    for name in ("user_features", "item_features", "click_pooling", "interest_filter"):
        fields.setdefault(name, False)
    fields.setdefault("window_stride", None)
    config = SimulatorConfig.from_dict(fields)
    schema = DataSchema.from_dict({"user_features": {}, "item_features": {}, **_json(src / "schema.json")})
    states = _tensors(src / "weights.pt", src / "weights.pt")
    members = []
    for k in range(config.ensemble_size):
        state = dict(states[f"member_{k}"])
        if "temperature" in state and "calibration_bias" not in state:
            state["calibration_bias"] = torch.zeros_like(state["temperature"])
        model = ResponseModel(config, schema)
        model.load_state_dict(state)
        members.append(model.eval())
    found = _arrays(src / "start_pool.npz")
    if "user_features" not in found and "offsets" in found:
        found["user_features"] = np.zeros((len(found["offsets"]) - 1, 0), dtype=np.float32)
    pool = start_pool_of(found, src / "start_pool.npz", legacy=True)
    check_start_pool(pool, schema.n_items, schema.user_features.width, src / "start_pool.npz")
    save(simulator_of(config, schema, members, pool, _json(src / "item_ids.json")), dst)
    return "simulator"


def _legacy_train_config(src: Path):
    """The run's `TrainConfig`, with a pretrained encoder's path replaced by its (JSON) config."""
    import dataclasses

    from agents.training.config import TrainConfig

    config = TrainConfig.from_dict(_json(src / "train_config.json"), where=str(src / "train_config.json"))
    if config.encoder_checkpoint is not None:
        checkpoint = Path(config.encoder_checkpoint)
        name = _json(checkpoint / "checkpoint.json")["encoder"] if (checkpoint / "checkpoint.json").is_file() else None
        if name is None:  # already converted
            name = json.loads((checkpoint / "manifest.json").read_text())["metadata"]["encoder"]
        config = dataclasses.replace(
            config, encoder=name, encoder_config=_json(checkpoint / "config.json"), encoder_checkpoint=None
        )
    return config


def _convert_sb3(src: Path, dst: Path) -> str:
    from agents.training.config import save_training_state
    from agents.training.sb3 import OPTIMIZER, WEIGHTS_FILE, SB3Policy, _make_env, build_model
    from recsim_env.checkpoint import write_tensors, write_tree

    if not (src / "train_config.json").is_file():
        raise CheckpointError(f"{src / 'train_config.json'}: missing; an SB3 policy converts from its run directory")
    config = _legacy_train_config(src)
    env = _make_env(config, 1, config.seed)
    model = build_model(config, env)
    env.close()
    weights = _zip_member(src / "model.zip", "policy.pth")
    if weights is None:
        raise CheckpointError(f"{src / 'model.zip'}: has no policy.pth")
    model.policy.load_state_dict(_tensors(weights, src / "model.zip:policy.pth"))
    optimizer = _zip_member(src / "model.zip", "policy.optimizer.pth")
    progress = _json(src / "progress.json") if (src / "progress.json").is_file() else {}
    dst.mkdir(parents=True, exist_ok=True)
    SB3Policy(model, config.algo, config).save(dst / POLICY_SUBDIR)

    def write(tmp: Path) -> None:
        write_tensors(tmp / WEIGHTS_FILE, model.policy.state_dict())
        if optimizer is not None:
            write_tree(tmp, OPTIMIZER, _tensors(optimizer, src / "model.zip:policy.optimizer.pth"))

    # SB3 kept the step count in the pickled `data` entry, which is never read: resume counts from 0
    # unless the run recorded its progress.
    save_training_state(dst, config, {"timesteps": int(progress.get("timesteps", 0))}, write)
    return "sb3 run (optimiser kept; step count and replay buffer not carried: they were pickled)"


def _convert_rllib(src: Path, dst: Path, manifest: dict) -> str:
    from agents.rllib.policy import RLModulePolicy

    config = manifest["config"]
    policy = RLModulePolicy.build(
        algo=config["algo"], env_id=config["env_id"], env_config=config["env_config"], **config["module_config"]
    )
    policy.module.load_state_dict(_tensors(src / "module_state.pt", src / "module_state.pt"))
    target = dst / POLICY_SUBDIR if (src / "train_config.json").is_file() else dst
    policy.save(target)
    if target != dst:
        from agents.training.config import save_training_state

        progress = _json(src / "progress.json") if (src / "progress.json").is_file() else {"timesteps": 0}
        save_training_state(dst, _legacy_train_config(src), {"timesteps": int(progress.get("timesteps", 0))})
    return "rllib run" if target != dst else "rllib policy"


def _convert_torch_policy(src: Path, dst: Path, manifest: dict) -> str:
    """Sim2Rec, TSCAC and DT4IER: `config.json` + `weights.pt` (+ DT4IER's `stats.json`)."""
    from agents.policy import policy_class, save_policy
    from recsim_env.checkpoint import write_json, write_tensors

    kind = manifest["kind"]
    weights = _tensors(src / "weights.pt", src / "weights.pt")

    def write(tmp: Path) -> None:
        write_json(tmp / "config.json", _json(src / "config.json"))
        if kind == "dt4ier":
            write_json(tmp / "stats.json", _json(src / "stats.json"))
        write_tensors(tmp / "weights.safetensors", weights)

    save_policy(dst, kind, manifest["config"], write)
    policy_class(kind).load(dst)  # the converted policy must load (config and weights fit)
    return f"{kind} policy"


def _convert_policy(src: Path, dst: Path) -> str:
    from agents.baselines import baseline_policy
    from agents.encoder_policy import EncoderPolicy
    from recsim_env.encoders.checkpoint import Checkpoint

    manifest = _json(src / "policy.json")
    if not isinstance(manifest, dict) or manifest.get("format_version") != 1:
        raise CheckpointError(f"{src / 'policy.json'}: not a format-1 policy manifest")
    kind = manifest.get("kind")
    kind = {"agents.dt4ier:DT4IERPolicy": "dt4ier"}.get(kind, kind)  # the one module path format 1 wrote
    if kind not in POLICY_KINDS:
        raise CheckpointError(
            f"{src / 'policy.json'}: kind {kind!r} is not a registered policy kind; it is not converted "
            "(a kind naming a module would make the loader import it)"
        )
    manifest = {**manifest, "kind": kind}
    config = manifest.get("config", {})
    if kind in ("uniform", "popularity", "greedy"):
        from recsim_env.policies import LoggedItemStats

        stats = None
        if kind != "uniform":
            arrays = _arrays(src / "item_stats.npz")
            fields = ("clicks", "impressions", "category", "context_clicks", "context_impressions")
            stats = LoggedItemStats(**{key: arrays.get(key) for key in fields})
        config = dict(config)
        baseline_policy(config.pop("name"), stats=stats, **config).save(dst)
        return f"{kind} baseline"
    if kind == "encoder":
        tmp = Path(tempfile.mkdtemp())
        try:
            _convert_encoder(src, tmp / "encoder")
            from recsim_env.encoders.checkpoint import load_checkpoint

            checkpoint: Checkpoint = load_checkpoint(tmp / "encoder")
            EncoderPolicy(checkpoint, **config).save(dst)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return "encoder policy"
    if kind == "sb3":
        return _convert_sb3(src, dst)
    if kind == "rllib":
        return _convert_rllib(src, dst, manifest)
    return _convert_torch_policy(src, dst, manifest)


def _convert_into(src: Path, new: Path) -> str:
    """Write the converted artifact of `src` to `new`; what it was."""
    try:
        if (src / "checkpoint.json").is_file() and not (src / "policy.json").is_file():
            return _convert_encoder(src, new)
        if (src / "schema.json").is_file() and (src / "start_pool.npz").is_file():
            return _convert_simulator(src, new)
        if (src / "policy.json").is_file():
            return _convert_policy(src, new)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
        raise CheckpointError(
            f"{src}: cannot convert: its files do not describe a format-1 artifact ({error!r})"
        ) from None
    raise CheckpointError(f"{src}: not a saved encoder, simulator, policy or run of format 1")


def _old_simulator_format(src: Path) -> bool:
    """Whether `src` is a saved simulator of an older simulator format (`simulators.checkpoint.FORMAT`)."""
    manifest = json.loads((src / "manifest.json").read_text())
    if manifest.get("kind") != "simulator":
        return False
    from simulators.checkpoint import FORMAT

    version = (manifest.get("metadata") or {}).get("simulator_format", 1)
    return isinstance(version, int) and version < FORMAT


def _upgrade_simulator(src: Path, out: str | os.PathLike | None) -> tuple[Path, str]:
    """`simulators.checkpoint.upgrade` of `src`, in place (written beside it, then swapped in) or to `out`."""
    from simulators.checkpoint import upgrade

    target = Path(out) if out is not None else src
    if target != src:
        if target.exists():
            raise CheckpointError(f"{target}: exists; give a new directory to --out")
        return upgrade(src, target), "simulator"
    staging = Path(tempfile.mkdtemp(dir=src.parent, prefix=f".{src.name}.convert-"))
    try:
        new = upgrade(src, staging / "new")
        for name in CARRIED:
            if (src / name).is_file():
                shutil.copy2(src / name, new / name)
        for png in src.glob("*.png"):
            shutil.copy2(png, new / png.name)
        swap_in(new, src)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return src, "simulator"


def convert(src: str | os.PathLike, out: str | os.PathLike | None = None) -> tuple[Path, str]:
    """Convert the format-1 artifact or run directory `src`; returns `(where it is now, what it was)`.

    With `out=None` the conversion replaces `src` (written beside it, then swapped in).
    """
    src = Path(src)
    if not src.is_dir():
        raise CheckpointError(f"{src}: no such directory")
    if is_artifact(src) and json.loads((src / "manifest.json").read_text()).get("format_version") != 1:
        if _old_simulator_format(src):
            return _upgrade_simulator(src, out)
        raise CheckpointError(f"{src}: already in the current format; nothing to convert")
    if is_artifact(src / POLICY_SUBDIR):
        raise CheckpointError(f"{src}: already in the current format; nothing to convert")
    target = Path(out) if out is not None else src
    staging = Path(tempfile.mkdtemp(dir=target.parent if target.parent.exists() else None, prefix=f".{target.name}.convert-"))
    new = staging / "new"
    try:
        what = _convert_into(src, new)
        for name in CARRIED:
            if (src / name).is_dir():
                shutil.copytree(src / name, new / name, symlinks=True)
            elif (src / name).is_file():
                shutil.copy2(src / name, new / name)
        for png in src.glob("*.png"):
            shutil.copy2(png, new / png.name)
        if out is None or target == src:
            swap_in(new, src)
        else:
            if target.exists():
                raise CheckpointError(f"{target}: exists; give a new directory to --out")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(new, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, what
