"""Saved artifacts: one directory format for encoders, simulators, policies and training state.

An artifact is a directory of plain files and a `manifest.json`:

    {"format": "recsim-env/artifact", "format_version": 2, "kind": "policy",
     "metadata": {...},
     "files": {"policy.json": {"bytes": 312, "sha256": "..."}, "weights.safetensors": {...}},
     "sha256": "..."}                       # of the manifest's own content, so damage to it is named

* Tensors are stored as safetensors (a JSON header and raw little-endian buffers: no pickle, no code),
  everything else as JSON. Nested state with tensors inside (optimiser states, replay buffers) goes
  through `encode_tree` / `decode_tree`: its tensors to safetensors, the rest to JSON.
* `open_artifact` checks the manifest before anything is read: its format and version, the kind the
  caller expects, every listed path (relative, inside the directory, no `..`, no links), every file's
  size and SHA-256. Readers then ask the `Artifact` for a listed file by name and parse the bytes whose
  hash was checked; a file the manifest does not list is never read.
* `save_artifact` writes a whole new directory beside the target and swaps it in, so an interrupted
  save leaves the old artifact (or none), never a mix of old and new files.

Nothing a file says is imported or executed: kinds and class names are looked up in fixed registries
by the callers. Artifacts of format 1 (pickled SB3 archives, `weights.pt`) are refused with the
command that converts them once (`seqrec convert DIR`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from recsim_env.errors import CheckpointError, UnsafePathError
from recsim_env.typed_json import check_fields, dataclass_from_json  # noqa: F401  (part of this module's API)

FORMAT = "recsim-env/artifact"
FORMAT_VERSION = 2
MANIFEST_FILE = "manifest.json"
KINDS = ("encoder", "simulator", "policy", "training-state")
"""What an artifact holds; a loader names the kind it expects and refuses the others."""
MAX_MANIFEST_BYTES = 16 << 20
MAX_FILES = 10_000
MAX_JSON_BYTES = 256 << 20
CONVERT_HINT = "convert it once with `seqrec convert {path}` (see docs/security.md)"
LEGACY_MARKERS = ("policy.json", "checkpoint.json", "model.zip", "weights.pt", "module_state.pt")


# ---------------------------------------------------------------------------------------------- paths
def safe_relative_path(name: Any, *, what: str = "path") -> PurePosixPath:
    """`name` as a relative POSIX path that cannot leave its root, else `UnsafePathError`.

    Refused: non-strings, empty names, absolute paths, drive letters, backslashes, NUL bytes, and any
    `.` or `..` component.
    """
    if not isinstance(name, str) or not name:
        raise UnsafePathError(f"{what} {name!r}: must be a non-empty relative path")
    if "\x00" in name or "\\" in name or ":" in name:
        raise UnsafePathError(f"{what} {name!r}: NUL, backslash and ':' are not allowed")
    path = PurePosixPath(name)
    if path.is_absolute():
        raise UnsafePathError(f"{what} {name!r}: must be relative, not absolute")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise UnsafePathError(f"{what} {name!r}: '.', '..' and empty components are not allowed")
    return path


def resolve_inside(root: Path, name: str, *, what: str = "path") -> Path:
    """`root / name` after checking that it stays inside `root` and passes through no symbolic link."""
    relative = safe_relative_path(name, what=what)
    current = root
    for part in relative.parts:
        current = current / part
        if current.is_symlink():
            raise UnsafePathError(
                f"{what} {name!r}: {current} is a symbolic link; artifacts hold plain files"
            )
    resolved = current.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise UnsafePathError(f"{what} {name!r}: resolves outside {root}")
    return current


# ---------------------------------------------------------------------------------------------- hashing
def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------- tensors
def _is_torch_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def tensors_bytes(tensors: Mapping[str, Any]) -> bytes:
    """Serialise a flat `{name: array or tensor}` mapping as safetensors.

    Torch tensors keep their dtype (bf16 included); numpy arrays are stored as they are. Object and
    other non-numeric arrays are refused.
    """
    if any(_is_torch_tensor(value) for value in tensors.values()):
        from safetensors.torch import save

        torch = sys.modules["torch"]  # loaded: the caller holds torch tensors

        out, seen = {}, set()
        for key, value in tensors.items():
            tensor = value if _is_torch_tensor(value) else torch.from_numpy(np.ascontiguousarray(value))
            tensor = tensor.detach().cpu().contiguous()
            if tensor.numel() and tensor.data_ptr() in seen:  # tied weights: safetensors stores each once
                tensor = tensor.clone()
            seen.add(tensor.data_ptr())
            out[key] = tensor
        return save(out)
    from safetensors.numpy import save

    arrays = {}
    for key, value in tensors.items():
        array = np.ascontiguousarray(value)
        if array.dtype.kind not in "biufc":
            raise TypeError(f"tensor {key!r}: dtype {array.dtype} cannot be saved (numbers and bools only)")
        arrays[key] = array
    return save(arrays)


def tensors_from_bytes(data: bytes, *, framework: str = "np", where: str = "tensors") -> dict[str, Any]:
    """Parse safetensors bytes into numpy arrays (`framework="np"`) or torch tensors (`"pt"`)."""
    try:
        if framework == "pt":
            from safetensors.torch import load
        else:
            from safetensors.numpy import load
        return dict(load(data))
    except Exception as error:  # safetensors raises its own error types for damaged headers
        raise CheckpointError(f"{where}: not a readable safetensors file ({error})") from None


# ---------------------------------------------------------------------------------------------- trees
_TENSOR = "__tensor__"
_TUPLE = "__tuple__"
_ITEMS = "__items__"
_FLOAT = "__float__"


def encode_tree(tree: Any, prefix: str = "") -> tuple[Any, dict[str, Any]]:
    """Split nested state into JSON and tensors: `(json_tree, {name: tensor})`.

    Supported: dicts (string or integer keys), lists, tuples, None, bools, ints, floats (non-finite
    included), strings, numpy arrays and scalars, torch tensors. Anything else raises `TypeError`, so
    an object that would need pickle never reaches a file.
    """
    tensors: dict[str, Any] = {}

    def encode(value: Any, path: str) -> Any:
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, int | np.integer) and not isinstance(value, np.bool_):
            return int(value)
        if isinstance(value, float | np.floating):
            value = float(value)
            return value if math.isfinite(value) else {_FLOAT: repr(value)}
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, np.ndarray) or _is_torch_tensor(value):
            name = f"{prefix}{path}" or "value"
            tensors[name] = value
            return {_TENSOR: name}
        if isinstance(value, Mapping):
            if all(isinstance(key, str) for key in value) and not any(
                key in (_TENSOR, _TUPLE, _ITEMS, _FLOAT) for key in value
            ):
                return {key: encode(item, f"{path}.{key}") for key, item in value.items()}
            items = []
            for key, item in value.items():
                if isinstance(key, bool) or not isinstance(key, int | str):
                    raise TypeError(f"state key {key!r} at {path or 'root'}: only str and int keys are saved")
                items.append([key, encode(item, f"{path}.{key}")])
            return {_ITEMS: items}
        if isinstance(value, tuple):
            return {_TUPLE: [encode(item, f"{path}.{i}") for i, item in enumerate(value)]}
        if isinstance(value, list):
            return [encode(item, f"{path}.{i}") for i, item in enumerate(value)]
        raise TypeError(
            f"state at {path or 'root'}: {type(value).__name__} cannot be saved as JSON + tensors"
        )

    return encode(tree, ""), tensors


def decode_tree(tree: Any, tensors: Mapping[str, Any], *, where: str = "state") -> Any:
    """Rebuild what `encode_tree` split; a reference to a missing tensor raises `CheckpointError`."""

    def decode(value: Any) -> Any:
        if isinstance(value, list):
            return [decode(item) for item in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {_TENSOR}:
            if value[_TENSOR] not in tensors:
                raise CheckpointError(f"{where}: refers to tensor {value[_TENSOR]!r}, which is not saved")
            return tensors[value[_TENSOR]]
        if set(value) == {_TUPLE}:
            return tuple(decode(item) for item in value[_TUPLE])
        if set(value) == {_FLOAT}:
            if value[_FLOAT] not in ("nan", "inf", "-inf"):
                raise CheckpointError(f"{where}: bad float {value[_FLOAT]!r}")
            return float(value[_FLOAT])
        if set(value) == {_ITEMS}:
            return {key: decode(item) for key, item in value[_ITEMS]}
        return {key: decode(item) for key, item in value.items()}

    try:
        return decode(tree)
    except (
        TypeError,
        ValueError,
        RecursionError,
    ) as error:  # e.g. "__items__" that are not [key, value] pairs
        raise CheckpointError(f"{where}: malformed state ({type(error).__name__}: {error})") from None


# ---------------------------------------------------------------------------------------------- writing
def json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, allow_nan=False) + "\n").encode()


def write_json(path: Path, value: Any) -> None:
    path.write_bytes(json_bytes(value))


def write_tensors(path: Path, tensors: Mapping[str, Any]) -> None:
    path.write_bytes(tensors_bytes(tensors))


def write_tree(directory: Path, name: str, tree: Any) -> None:
    """`name.json` (the tree without its tensors) and `name.safetensors` (its tensors) in `directory`."""
    skeleton, tensors = encode_tree(tree)
    write_json(directory / f"{name}.json", skeleton)
    write_tensors(directory / f"{name}.safetensors", tensors)


def _listing(directory: Path) -> dict[str, dict[str, Any]]:
    files = {}
    for path in sorted(directory.rglob("*")):
        if path.is_symlink():
            raise CheckpointError(f"{path}: artifacts hold plain files, not links")
        if path.is_file() and path.name != MANIFEST_FILE:
            files[path.relative_to(directory).as_posix()] = {
                "bytes": path.stat().st_size,
                "sha256": sha256_file(path),
            }
    return files


def _self_digest(manifest: Mapping[str, Any]) -> str:
    """SHA-256 of the manifest's own content (without this digest), so a damaged manifest is named."""
    body = {key: value for key, value in manifest.items() if key != "sha256"}
    return sha256_bytes(json.dumps(body, sort_keys=True, allow_nan=False).encode())


def write_manifest(directory: Path, kind: str, metadata: Mapping[str, Any]) -> None:
    """(Re)write `directory/manifest.json` over the files the directory holds now."""
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "metadata": dict(metadata),
        "files": _listing(directory),
    }
    manifest["sha256"] = _self_digest(manifest)
    write_json(directory / MANIFEST_FILE, manifest)


def check_replaceable(directory: str | os.PathLike) -> None:
    """Refuse a save target that holds other things: a file, or a non-empty folder that is not an
    artifact. Commands call it before they train, so a bad `--out` costs nothing."""
    target = Path(directory)
    if target.exists() and (target.is_symlink() or not target.is_dir()):
        raise CheckpointError(f"{target}: exists and is not a directory; refusing to replace it")
    if target.is_dir() and not is_artifact(target) and any(target.iterdir()):
        raise CheckpointError(
            f"{target}: exists, is not empty and is not a saved artifact; refusing to replace it "
            "(give a new or empty directory)"
        )


def save_artifact(
    directory: str | os.PathLike,
    kind: str,
    write: Callable[[Path], None],
    *,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write an artifact of `kind` to `directory`, whole: `write(tmp)` fills a new directory, then it
    is hashed into its manifest and swapped in place of `directory` (which may exist).

    If `write` raises, nothing at `directory` changes and the new directory is removed. A directory that
    holds other files (not an artifact) is never replaced: that is a `CheckpointError`.
    """
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: not one of {KINDS}")
    target = Path(directory)
    check_replaceable(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.new-"))
    try:
        write(tmp)
        write_manifest(tmp, kind, metadata or {})
        swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def swap_in(new: Path, target: Path) -> None:
    """Replace `target` by the directory `new`: the old one is renamed aside, then removed."""
    if not target.exists() and not target.is_symlink():
        os.replace(new, target)
        return
    if target.is_symlink() or not target.is_dir():
        raise CheckpointError(f"{target}: exists and is not a directory; refusing to replace it")
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
    os.rmdir(old)
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)  # put the old artifact back
        raise
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class Artifact:
    """A checked artifact directory: read its listed files through it."""

    root: Path
    kind: str
    metadata: dict[str, Any]
    files: dict[str, dict[str, Any]] = field(repr=False)

    def has(self, name: str) -> bool:
        return name in self.files

    def path(self, name: str) -> Path:
        """The path of listed file `name` (for readers that need one); prefer `read_bytes`."""
        if name not in self.files:
            raise CheckpointError(f"{self.root / name}: not listed in {self.root / MANIFEST_FILE}")
        return resolve_inside(self.root, name, what=f"{self.root / MANIFEST_FILE}: file")

    def read_bytes(self, name: str) -> bytes:
        """The bytes of listed file `name`, checked against the manifest's size and SHA-256."""
        path = self.path(name)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise CheckpointError(f"{path}: cannot read ({error})") from None
        expected = self.files[name]
        if len(data) != expected["bytes"]:
            raise CheckpointError(
                f"{path}: truncated or altered: {len(data)} bytes, the manifest says {expected['bytes']}"
            )
        if sha256_bytes(data) != expected["sha256"]:
            raise CheckpointError(f"{path}: corrupt: its SHA-256 differs from the manifest's")
        return data

    def read_json(self, name: str) -> Any:
        data = self.read_bytes(name)
        try:
            return json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
            raise CheckpointError(
                f"{self.root / name}: not valid JSON ({type(error).__name__}: {error})"
            ) from None

    def read_json_object(self, name: str, required: Iterable[str] = ()) -> dict[str, Any]:
        """A JSON object with the `required` keys, else `CheckpointError` naming the file and key."""
        value = self.read_json(name)
        if not isinstance(value, dict):
            raise CheckpointError(f"{self.root / name}: must hold a JSON object, got {type(value).__name__}")
        for key in required:
            if key not in value:
                raise CheckpointError(f"{self.root / name}: no {key!r} entry")
        return value

    def read_tensors(self, name: str, *, framework: str = "np") -> dict[str, Any]:
        return tensors_from_bytes(self.read_bytes(name), framework=framework, where=str(self.root / name))

    def load_state_dict(self, module: Any, name: str) -> None:
        """Load listed safetensors file `name` into a torch module, strictly; a mismatch names the file."""
        state = self.read_tensors(name, framework="pt")
        try:
            module.load_state_dict(state)
        except RuntimeError as error:  # missing, unexpected or mis-shaped tensors
            raise CheckpointError(
                f"{self.root / name}: weights do not fit the configured model: {error}"
            ) from None

    def read_tree(self, name: str, *, framework: str = "np") -> Any:
        """Nested state written by `write_tree(directory, name, tree)`."""
        return decode_tree(
            self.read_json(f"{name}.json"),
            self.read_tensors(f"{name}.safetensors", framework=framework),
            where=str(self.root / name),
        )


def is_artifact(directory: str | os.PathLike) -> bool:
    return (Path(directory) / MANIFEST_FILE).is_file()


def _legacy_error(root: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"{root}: {why}; it was saved by an older version (format 1): " + CONVERT_HINT.format(path=root)
    )


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """The parsed, structurally checked manifest of `directory` (no file hashes checked yet)."""
    root = Path(directory)
    if not root.is_dir():
        raise CheckpointError(f"{root}: not a saved artifact (no such directory)")
    file = root / MANIFEST_FILE
    if file.is_symlink():
        raise CheckpointError(f"{file}: is a symbolic link; refusing it")
    if not file.is_file():
        if any((root / marker).exists() for marker in LEGACY_MARKERS):
            raise _legacy_error(root, f"no {MANIFEST_FILE}")
        raise CheckpointError(f"{file}: missing; {root} is not a saved artifact")
    if file.stat().st_size > MAX_MANIFEST_BYTES:
        raise CheckpointError(
            f"{file}: {file.stat().st_size} bytes, over the {MAX_MANIFEST_BYTES} a manifest may have"
        )
    try:
        manifest = json.loads(file.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise CheckpointError(f"{file}: not valid JSON ({error})") from None
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{file}: must hold a JSON object")
    version = manifest.get("format_version")
    if manifest.get("format") != FORMAT:
        if version == 1:
            raise _legacy_error(root, f"{MANIFEST_FILE} has format_version 1")
        raise CheckpointError(
            f"{file}: not a recsim-env artifact manifest (format {manifest.get('format')!r})"
        )
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{file}: format_version {version!r}; this version of recsim-env reads {FORMAT_VERSION}"
        )
    if manifest.get("sha256") != _self_digest(manifest):
        raise CheckpointError(f"{file}: corrupt: its own SHA-256 ('sha256') does not match its content")
    if manifest.get("kind") not in KINDS:
        raise CheckpointError(f"{file}: unknown kind {manifest.get('kind')!r}; known: {', '.join(KINDS)}")
    files = manifest.get("files")
    if not isinstance(files, dict) or len(files) > MAX_FILES:
        raise CheckpointError(f"{file}: 'files' must be an object of at most {MAX_FILES} entries")
    metadata = manifest.get("metadata", {})
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{file}: 'metadata' must be a JSON object")
    for name, entry in files.items():
        try:
            safe_relative_path(name, what=f"{file}: file")
        except UnsafePathError as error:
            raise CheckpointError(str(error)) from None
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("bytes"), int)
            or isinstance(entry.get("bytes"), bool)
            or entry["bytes"] < 0
            or not isinstance(entry.get("sha256"), str)
            or len(entry["sha256"]) != 64
        ):
            raise CheckpointError(
                f"{file}: entry for {name!r} needs 'bytes' (int >= 0) and 'sha256' (64 hex digits)"
            )
    return manifest


def open_artifact(
    directory: str | os.PathLike, kind: str | tuple[str, ...] | None = None, *, required: Iterable[str] = ()
) -> Artifact:
    """Check the artifact in `directory` whole and return a handle to read it.

    Raises `CheckpointError` naming the file: missing or malformed manifest, another kind than
    `kind`, a listed path that leaves the directory or passes through a link, a `required` file not
    listed, or any listed file missing, truncated or altered.
    """
    root = Path(directory)
    manifest = read_manifest(root)
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds is not None and manifest["kind"] not in kinds:
        raise CheckpointError(
            f"{root / MANIFEST_FILE}: holds a {manifest['kind']!r} artifact, expected {' or '.join(kinds)}"
        )
    files = manifest["files"]
    for name in required:
        if name not in files:
            raise CheckpointError(f"{root / MANIFEST_FILE}: does not list required file {name!r}")
    for name, entry in files.items():
        try:
            path = resolve_inside(root, name, what=f"{root / MANIFEST_FILE}: file")
        except UnsafePathError as error:
            raise CheckpointError(str(error)) from None
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (listed in {MANIFEST_FILE})")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise CheckpointError(
                f"{path}: truncated or altered: {size} bytes, the manifest says {entry['bytes']}"
            )
        if sha256_file(path) != entry["sha256"]:
            raise CheckpointError(f"{path}: corrupt: its SHA-256 differs from the manifest's")
    return Artifact(root, manifest["kind"], manifest.get("metadata", {}), files)
