"""The inputs of `seqrec ope-report`: the log, and each candidate policy's action distribution (uniform, a
`.npy` array read without unpickling, a sparse `.npz` of each row's top items plus the rest's mass, or a saved
`agents.Policy` run on the log's histories).

Heavy libraries are imported inside the functions, never at module import.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console

from evaluation.ope.sparse import SparseActionDist
from recsim_env.errors import ArgumentError, DataError

_TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")
_OPTIONAL_COLUMNS = {
    "position": "position",
    "propensity": "propensity",
    "session_id": "session",
    "slate_id": "slate",
}


def load_logs(path: Path):
    """Load a log: a `LoggedInteractions` parquet or data-set directory via `recsim_env.data.load`, or a
    CSV / TSV / Parquet table with `user_id`, `item_id`, `timestamp`, feedback columns and any of
    `position`, `propensity`, `session_id`, `slate_id`."""
    import pandas as pd

    from recsim_env.data.interactions import has_logged_interactions_metadata
    from recsim_env.data.loaders import ColumnMapping, load

    if (
        path.is_file()
        and path.suffix.lower() in _TABLE_SUFFIXES
        and not has_logged_interactions_metadata(path)
    ):
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            columns = pq.read_schema(path).names
        else:
            columns = list(
                pd.read_csv(path, nrows=0, sep="\t" if path.suffix.lower() == ".tsv" else ",").columns
            )
        # Reserved columns are only kept when mapped explicitly; map the ones the file has.
        mapping = ColumnMapping(**{field: col for col, field in _OPTIONAL_COLUMNS.items() if col in columns})
        return load(path, mapping=mapping)
    return load(path)


DENSE_ACTION_DIST_MAX_ELEMENTS = 2**28
"""Most elements (2 GiB of float64) of a dense `[rows, N, K]` action distribution the report builds for the
uniform policy; above it the uniform policy is a `SparseActionDist` (no listed item, all mass in the rest)."""
SPARSE_ARRAYS = ("items", "probs", "rest")
"""The arrays of a sparse `.npz` policy file (`rest` optional)."""

NPY_CHECK_ELEMENTS = 4_000_000
"""Elements of a `.npy` policy array checked at once (its rows are all checked, in bounded memory)."""


def read_npy(path: Path) -> np.ndarray:
    """A `.npy` file of plain numbers, memory-mapped read-only; never unpickles anything.

    The header is read and checked before any data: an object array (which only pickle could restore),
    a structured, string, boolean or complex dtype, or a corrupt header is refused with a `DataError`
    naming the file, and the data is then mapped with `allow_pickle=False`.
    """
    try:
        with path.open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                raise DataError(f"{path}: unsupported .npy format version {version}")
    except DataError:
        raise
    except (ValueError, OSError, EOFError, SyntaxError) as err:
        raise DataError(f"{path}: not a readable .npy array ({type(err).__name__}: {err})") from None
    if dtype.hasobject:
        raise DataError(
            f"{path}: the array holds Python objects (dtype {dtype}), which only unpickling could read; "
            "refused: save the action distribution as plain floats"
        )
    if dtype.kind not in "fiu":
        raise DataError(f"{path}: expected an array of probabilities (floats), got dtype {dtype}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{path}: not a readable .npy array ({type(err).__name__}: {err})") from None


def read_sparse_npz(path: Path, *, n_rounds: int, n_actions: int, n_positions: int) -> SparseActionDist:
    """A sparse action distribution from an `.npz` file, read with `allow_pickle=False` and checked row by row.

    The file holds `items` (integers `[n, T]`: each row's listed items, distinct, in `[0, N)`), `probs`
    (floats `[n, T]`: their probabilities) and optionally `rest` (floats `[n]`: the mass of the `N - T`
    unlisted items, spread uniformly over them; default `1 - probs.sum(axis=1)`), one row per log row in
    `LoggedInteractions.frame` order; the distribution is the same at every slate position
    (`evaluation.ope.sparse`).

    Raises:
        DataError: naming the file and, where one is at fault, the array and its first bad row (0-based).
    """
    import zipfile

    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a readable .npz archive ({type(err).__name__}: {err})") from None
    with archive:
        names = set(archive.files)
        unknown = sorted(names - set(SPARSE_ARRAYS))
        missing = [name for name in ("items", "probs") if name not in names]
        if unknown or missing:
            raise DataError(
                f"{path}: a sparse action distribution holds the arrays items, probs and optionally rest; "
                + (f"missing {missing}" if missing else f"unknown {unknown}")
            )
        arrays = {}
        for name in sorted(names):
            try:
                arrays[name] = archive[name]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:  # object arrays need pickle
                raise DataError(
                    f"{path}: array {name!r} is not a plain numeric array ({type(err).__name__}: {err}); refused"
                ) from None
    for name, array in arrays.items():
        rows = array.shape[0] if array.ndim else None
        if rows != n_rounds:
            raise DataError(
                f"{path}: array {name!r} has shape {array.shape}, expected {n_rounds} rows (one per log row)"
            )
    return SparseActionDist.checked(
        arrays["items"],
        arrays["probs"],
        arrays.get("rest"),
        n_actions=n_actions,
        n_positions=n_positions,
        name=f"{path} (row = log data row - 1, in (user, timestamp) order)",
    )


def read_action_embedding(path: Path, *, n_actions: int):
    """The item embedding of `--action-embedding`: one integer value >= 0 per item, in item-index order.

    A `.npy` array `[N]` (read with `allow_pickle=False`), or a `.parquet` / `.csv` table of one column
    (a header row, then one row per item). Returns an `evaluation.ope.mips.ActionEmbedding`.

    Raises:
        DataError: naming the file, for an unreadable file, a length other than the log's `n_actions`
            items, or a value that is not an integer >= 0 (its 0-based item index).
    """
    from evaluation.ope.mips import ActionEmbedding

    suffix = path.suffix.lower()
    if suffix == ".npy":
        values = read_npy(path)
        if values.ndim != 1:
            raise DataError(
                f"{path}: expected a 1-dimensional array of one value per item, got shape {values.shape}"
            )
    else:
        import pandas as pd

        try:
            frame = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
        except (ValueError, OSError, ImportError) as err:
            raise DataError(f"{path}: not a readable {suffix} table ({type(err).__name__}: {err})") from None
        if frame.shape[1] != 1:
            raise DataError(
                f"{path}: expected one column of embedding values (one row per item), got columns "
                f"{list(frame.columns)}"
            )
        column = frame.iloc[:, 0]
        if column.isna().any():
            raise DataError(
                f"{path}: column {frame.columns[0]!r}: empty value at item {int(column.isna().argmax())}"
            )
        values = column.to_numpy()
        if values.dtype.kind not in "iuf":
            raise DataError(f"{path}: column {frame.columns[0]!r}: expected integers, got {values.dtype}")
    if len(values) != n_actions:
        raise DataError(
            f"{path}: {len(values):,} embedding values, but the log's catalogue has {n_actions:,} items"
        )
    try:
        return ActionEmbedding.checked(np.asarray(values), n_actions=n_actions, name=f"{path} (item index)")
    except ValueError as err:
        raise DataError(str(err)) from None


def check_policy_rows(where: str | Path, dist: np.ndarray) -> None:
    """Check every row of an action distribution `[n, N]` or `[n, N, K]`: finite, non-negative, and summing
    to 1 over actions within `ACTION_DIST_ATOL`. Rows are read in bounded chunks (a memory map stays one).

    Raises:
        DataError: naming `where`, the array and its first bad row (0-based, = log data row - 1).
    """
    from evaluation.ope.checks import ACTION_DIST_ATOL

    def located(index: tuple[int, ...]) -> str:
        row = index[0]
        text = f"{where}: action_dist row {row} (0-based; log data row {row + 1} in (user, timestamp) order)"
        labels = ("action", "position") if len(index) == dist.ndim else ("position",)
        return text + "".join(f", {label} {i}" for label, i in zip(labels, index[1:], strict=False))

    per_row = max(1, int(np.prod(dist.shape[1:], dtype=np.int64)))
    chunk = max(1, NPY_CHECK_ELEMENTS // per_row)
    for start in range(0, dist.shape[0], chunk):
        block = np.asarray(dist[start : start + chunk], dtype=np.float64)
        bad = ~(block >= 0.0)  # NaN included
        if bad.any() or not np.isfinite(block).all():
            bad |= ~np.isfinite(block)
            idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), block.shape))
            value = float(block[idx])
            why = "is not finite" if not np.isfinite(value) else "is negative"
            raise DataError(f"{located((start + idx[0], *idx[1:]))}: probability {value!r} {why}")
        sums = block.sum(axis=1)  # [c] or [c, K]
        off = ~(np.abs(sums - 1.0) <= ACTION_DIST_ATOL)
        if off.any():
            idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(off)), off.shape))
            raise DataError(
                f"{located((start + idx[0], *idx[1:]))}: probabilities sum to {float(sums[idx]):.6g}, not 1"
            )


def policy_action_dist(
    policy: str, *, n_rounds: int, n_actions: int, n_positions: int
) -> tuple[np.ndarray | SparseActionDist, str]:
    """The evaluation policy's `action_dist` `[n, N, K]` and a display name.

    `policy` is "uniform", a `.npy` file holding `[n, N]` (the same distribution at every position) or
    `[n, N, K]`, or a sparse `.npz` (`read_sparse_npz`, returned as a `SparseActionDist`), one row per log
    row in `LoggedInteractions.frame` order. Every row of the file is checked (`check_policy_rows`), not only
    the rows a subsample later scores.
    """
    if policy == "uniform":
        dist = np.full((1, n_actions, n_positions), 1.0 / n_actions)
        return np.broadcast_to(dist, (n_rounds, n_actions, n_positions)), "uniform policy"
    path = Path(policy)
    if path.suffix.lower() not in (".npy", ".npz"):
        raise ArgumentError(
            f"--policy {policy!r}: expected 'uniform', a saved policy directory or a .npy action-distribution array, "
            "or a sparse .npz (items, probs, rest)"
        )
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.suffix.lower() == ".npz":
        sparse = read_sparse_npz(path, n_rounds=n_rounds, n_actions=n_actions, n_positions=n_positions)
        return sparse, path.stem
    dist = read_npy(path)
    if dist.shape not in ((n_rounds, n_actions), (n_rounds, n_actions, n_positions)):
        raise DataError(
            f"{path}: action distribution has shape {dist.shape}, expected "
            f"({n_rounds}, {n_actions}[, {n_positions}]) (log rows, catalogue, positions)"
        )
    check_policy_rows(path, dist)
    if dist.ndim == 2:
        dist = np.broadcast_to(dist[:, :, None], (*dist.shape, n_positions))
    return dist, path.stem


def saved_policy_action_dist(
    policy_dir: Path, log, rows: np.ndarray, *, history_len: int, n_positions: int
) -> tuple[np.ndarray, str]:
    """`action_dist` `[len(rows), N, K]` of a saved `agents.Policy` on the log's rows.

    Each row's observation is what `SeqRec-v0` would have shown before that step: the user's last
    `history_len` logged items and their feedback (`recsim_env.data.history_windows`), the step within
    the session and the days since the previous session (both 0 when the log has no sessions). The
    policy's first-position distribution is used at every position.
    """
    from agents.policy import load_policy
    from recsim_env.data.batching import history_windows

    loaded = load_policy(policy_dir)
    if getattr(loaded, "n_items", log.n_items) != log.n_items:
        raise DataError(
            f"{policy_dir}: the policy recommends {loaded.n_items} items, the log's catalogue has {log.n_items}"
        )
    tokens = getattr(loaded, "item_tokens", None)  # policies that know their catalogue by raw item id
    if tokens is not None:
        from recsim_env.encoders.checkpoint import check_catalogue

        check_catalogue(tokens, np.asarray(log.item_ids.tokens).tolist(), where=str(policy_dir))
    windows = history_windows(log, history_len=history_len)
    session_step, gap_days = _session_position(log)
    obs = {
        "item_ids": windows.item_ids[windows.before[rows]],
        "feedback": windows.feedback[windows.before[rows]],
        "session_step": session_step[rows, None],
        "gap_days": gap_days[rows, None],
    }
    dist = np.asarray(loaded.action_distribution(obs))
    if dist.dtype.kind not in "fiu" or dist.shape != (len(rows), log.n_items):
        raise DataError(
            f"{policy_dir}: the policy's action_distribution returned {dist.dtype} of shape {dist.shape}, "
            f"expected floats of shape ({len(rows)}, {log.n_items})"
        )
    check_policy_rows(f"{policy_dir} (the policy's output)", dist)
    dist = dist.astype(np.float64, copy=False)
    return np.broadcast_to(dist[:, :, None], (*dist.shape, n_positions)), policy_dir.name


def _session_position(log) -> tuple[np.ndarray, np.ndarray]:
    """[n] step within the session and [n] days since the user's previous session (0 without `session_id`)."""
    from recsim_env.data.sessions import session_position, session_starts

    n = len(log.frame)
    starts = session_starts(log, gap_s=None) if n else None
    if starts is None:
        return np.zeros(n, np.int64), np.zeros(n, np.float32)
    return session_position(log, starts)


def candidate_action_dist(
    policy: str, log, feedback, rows: np.ndarray, n_log: int, *, history_len: int, console: Console
) -> tuple[np.ndarray | SparseActionDist, str]:
    """One candidate's `action_dist` `[len(rows), N, K]` (float64, contiguous; or a `SparseActionDist` for a
    sparse `.npz`, and for the uniform policy above `DENSE_ACTION_DIST_MAX_ELEMENTS`) and display name."""
    shape = (len(rows), feedback.n_actions, feedback.n_positions)
    if policy == "uniform" and np.prod(shape, dtype=np.float64) > DENSE_ACTION_DIST_MAX_ELEMENTS:
        return SparseActionDist.uniform(*shape), "uniform policy"
    if Path(policy).is_dir():
        with console.status(f"computing the action distribution of {policy}"):
            dist, name = saved_policy_action_dist(
                Path(policy), log, rows, history_len=history_len, n_positions=feedback.n_positions
            )
    else:
        dist, name = policy_action_dist(
            policy, n_rounds=n_log, n_actions=feedback.n_actions, n_positions=feedback.n_positions
        )
        if isinstance(dist, SparseActionDist):
            return dist.take(rows), name
        dist = dist[rows]
    return np.ascontiguousarray(dist, dtype=np.float64), name


def unique_names(names: list[str]) -> list[str]:
    """`names` with a repeated one numbered: ["a", "a"] -> ["a", "a (2)"]."""
    out: list[str] = []
    for name in names:
        candidate, k = name, 1
        while candidate in out:
            k += 1
            candidate = f"{name} ({k})"
        out.append(candidate)
    return out
