"""Logged interaction data: one table type (`LoggedInteractions`), loaders, splits, padded batches, data sets.

Conventions: user and item indices are contiguous int64 `0..n-1`; the padding id of item sequences is
`n_items`; timestamps are float64 seconds. Errors on bad input are `recsim_env.errors.DataError` and name the
file, column and first offending 1-based data row.
"""

from recsim_env.data.batching import (
    HistoryWindows,
    SequenceBatch,
    SequenceLoader,
    history_windows,
    pad_sequences,
)
from recsim_env.data.datasets import DATASETS, DatasetSpec, data_dir, fetch
from recsim_env.data.idmap import IdMap
from recsim_env.data.interactions import RESERVED_COLUMNS, DataStats, LoggedInteractions, UserSequences
from recsim_env.data.loaders import ColumnMapping, load, load_movielens, load_recbole, load_table
from recsim_env.data.splits import LeaveOneOut, TemporalSplit, leave_one_out, temporal_split
from recsim_env.data.validate import SECONDS_PER_DAY
from recsim_env.errors import DataError

__all__ = [
    "SECONDS_PER_DAY",
    "DATASETS",
    "RESERVED_COLUMNS",
    "ColumnMapping",
    "DataError",
    "DataStats",
    "DatasetSpec",
    "HistoryWindows",
    "IdMap",
    "LeaveOneOut",
    "LoggedInteractions",
    "SequenceBatch",
    "SequenceLoader",
    "TemporalSplit",
    "UserSequences",
    "data_dir",
    "fetch",
    "history_windows",
    "leave_one_out",
    "load",
    "load_movielens",
    "load_recbole",
    "load_table",
    "pad_sequences",
    "temporal_split",
]
