import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsim_env.data import (
    ColumnMapping,
    DataError,
    LoggedInteractions,
    load,
    load_movielens,
    load_recbole,
    load_table,
)

ML100K = Path(__file__).resolve().parents[3] / "../shared/data/ml-100k"
needs_ml100k = pytest.mark.skipif(
    not (ML100K / "ml-100k.inter").is_file(), reason=f"shared MovieLens 100K not found at {ML100K}"
)


def check_ml100k(data: LoggedInteractions) -> None:
    assert (data.n_users, data.n_items, data.n_interactions) == (943, 1682, 100_000)
    assert data.feedback_columns == ("rating",)
    assert data.name == "ml-100k"
    assert data.items is not None and data.users is not None
    assert data.items.loc[data.item_ids.to_index([1])[0], "movie_title"] == "Toy Story"
    assert data.user_ids.tokens.dtype == np.int64 and data.item_ids.tokens.tolist()[:3] == [1, 2, 3]
    assert set(np.unique(data.frame.rating)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    users = data.frame.user_id.to_numpy()
    assert np.all(np.diff(users) >= 0)
    same_user = np.diff(users) == 0
    assert np.all(np.diff(data.frame.timestamp.to_numpy())[same_user] >= 0)


@needs_ml100k
def test_ml100k_via_load_recbole_and_load():
    start = time.perf_counter()
    data = load_recbole(ML100K)
    elapsed = time.perf_counter() - start
    check_ml100k(data)
    assert elapsed < 1.0, f"loading ml-100k took {elapsed:.2f} s"
    check_ml100k(load(ML100K))
    check_ml100k(load(ML100K / "ml-100k.inter"))
    raw = pd.read_csv(ML100K / "ml-100k.inter", sep="\t")
    # the first file row, user 196 rating item 242 with 3 at 881250949, survives the remapping
    u, i = data.user_ids.to_index([196])[0], data.item_ids.to_index([242])[0]
    row = data.frame[(data.frame.user_id == u) & (data.frame.item_id == i)]
    assert row.rating.tolist() == [3.0] and row.timestamp.tolist() == [881250949.0]
    assert len(raw) == 100_000


@needs_ml100k
def test_ml100k_parquet_round_trip_with_side_tables(tmp_path):
    data = load_recbole(ML100K)
    data.to_parquet(tmp_path / "ml.parquet")
    back = load(tmp_path / "ml.parquet")
    pd.testing.assert_frame_equal(back.frame, data.frame, check_exact=True)
    pd.testing.assert_frame_equal(back.items, data.items, check_exact=True)
    pd.testing.assert_frame_equal(back.users, data.users, check_exact=True)
    assert back.user_ids == data.user_ids and back.item_ids == data.item_ids
    assert (back.name, back.feedback_columns) == ("ml-100k", ("rating",))


def write_recbole(folder: Path, inter: str) -> Path:
    folder.mkdir()
    (folder / "toy.inter").write_text(inter)
    return folder


def test_recbole_errors_name_file_column_row(tmp_path):
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    bad_float = write_recbole(tmp_path / "a", header + "1\t2\t3\t10\n1\t3\tfive\t11\n")
    with pytest.raises(DataError, match=r"toy.inter: column 'rating', row 2 .*not a number: 'five'"):
        load_recbole(bad_float)
    missing_ts = write_recbole(tmp_path / "b", "user_id:token\titem_id:token\trating:float\n1\t2\t3\n")
    with pytest.raises(DataError, match=r"toy.inter: column 'timestamp': missing column"):
        load_recbole(missing_ts)
    nan_user = write_recbole(tmp_path / "c", header + "1\t2\t3\t10\n\t3\t4\t11\n")
    with pytest.raises(DataError, match=r"toy.inter: column 'user_id', row 2 .*missing value"):
        load(nan_user)
    bad_header = write_recbole(tmp_path / "d", "user_id\titem_id:token\n1\t2\n")
    with pytest.raises(DataError, match=r"toy.inter: column 'user_id': header tokens must be `name:type`"):
        load_recbole(bad_header)
    empty = write_recbole(tmp_path / "e", header)
    with pytest.raises(DataError, match=r"toy.inter: empty file"):
        load_recbole(empty)
    string_ids = write_recbole(tmp_path / "f", header + "u1\tA\t3\t10\nu2\tB\t3\t11\n")
    data = load_recbole(string_ids)
    assert data.user_ids.tokens.tolist() == ["u1", "u2"] and data.name == "toy"


def test_movielens_100k_layout(tmp_path):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.data").write_text("1\t10\t5\t100\n2\t10\t3\t50\n1\t20\t4\t90\n")
    genres = "|".join(["0"] * 19)
    (folder / "u.item").write_bytes(
        f"10|Caf\xe9 (1995)|01-Jan-1995||http://x|{genres}\n20|B (1996)|01-Jan-1996||http://y|{genres}\n"
        f"30|C (1997)|01-Jan-1997||http://z|{genres}\n".encode("latin-1")
    )
    (folder / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    data = load_movielens(folder)
    assert (data.n_users, data.n_items, data.n_interactions) == (2, 3, 3)
    assert data.items["title"].tolist() == ["Caf\xe9 (1995)", "B (1996)", "C (1997)"]
    assert data.users["occupation"].tolist() == ["technician", "other"]
    assert data.feedback_columns == ("rating",) and data.name == "ml-100k"
    assert data.item_ids.to_token(data.frame.item_id).tolist() == [20, 10, 10]  # user 1 sorted by time
    assert load(folder / "u.data").n_interactions == 3


def test_movielens_1m_and_20m_layouts(tmp_path):
    one_m = tmp_path / "ml-1m"
    one_m.mkdir()
    (one_m / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    (one_m / "movies.dat").write_text(
        "1193::One Flew Over the Cuckoo's Nest: A Film (1975)::Drama\n661::J (1996)::Animation\n"
    )
    (one_m / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    data = load(one_m)
    assert (data.n_users, data.n_items, data.n_interactions) == (2, 2, 3)
    assert data.items.loc[data.item_ids.to_index([1193])[0], "title"].startswith(
        "One Flew Over the Cuckoo's Nest: A"
    )
    assert data.users["zip_code"].tolist() == ["48067", "70072"]
    twenty_m = tmp_path / "ml-20m"
    twenty_m.mkdir()
    (twenty_m / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n1,29,3.5,1112484676\n"
    )
    (twenty_m / "movies.csv").write_text(
        'movieId,title,genres\n2,"Jumanji, The (1995)",Adventure\n29,B,Drama\n50,C,Drama\n'
    )
    data = load(twenty_m)
    assert (data.n_users, data.n_items, data.n_interactions) == (1, 3, 2)
    assert data.frame.rating.tolist() == [3.5, 3.5]
    assert data.items["title"].iloc[0] == "Jumanji, The (1995)"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "u.data").write_text("1\t10\t5\t100\n2\t10\t3\tlater\n")
    with pytest.raises(
        DataError, match=r"u.data: column 'timestamp', row 2 .*cannot parse timestamp 'later'"
    ):
        load(bad)


def test_generic_csv_and_parquet_with_mapping(tmp_path):
    df = pd.DataFrame(
        {
            "visitor": ["v2", "v1", "v2", "v1"],
            "sku": ["shoe", "hat", "hat", "sock"],
            "when": [
                "2024-01-02T10:00:00",
                "2024-01-01T00:00:00",
                "2024-01-01T09:00:00",
                "2024-01-01T00:00:00",
            ],
            "clicked": [1, 0, 1, 1],
            "dwell": [3.5, 0.0, 1.0, 2.0],
            "sess": [7, 8, 7, 8],
            "p": [0.5, 0.25, 1.0, 0.5],
        }
    )
    mapping = ColumnMapping(user="visitor", item="sku", timestamp="when", feedback=("clicked", "dwell"),
                            session="sess", propensity="p")  # fmt: skip
    df.to_csv(tmp_path / "events.csv", index=False)
    df.to_parquet(tmp_path / "events.parquet")
    for path in (tmp_path / "events.csv", tmp_path / "events.parquet"):
        data = load_table(path, mapping)
        assert data.name == "events" and data.feedback_columns == ("clicked", "dwell")
        assert data.user_ids.tokens.tolist() == ["v1", "v2"]
        assert data.item_ids.tokens.tolist() == ["hat", "shoe", "sock"]
        assert list(data.frame.columns) == [
            "user_id",
            "item_id",
            "timestamp",
            "clicked",
            "dwell",
            "session_id",
            "propensity",
        ]
        v2 = data.frame[data.frame.user_id == 1]
        assert data.item_ids.to_token(v2.item_id).tolist() == ["hat", "shoe"]
        assert v2.timestamp.tolist() == [1704099600.0, 1704189600.0]
        assert load(path, mapping=mapping).n_interactions == 4
    with pytest.raises(DataError, match=r"events.csv: column 'nope': bad mapping, column not in file"):
        load_table(tmp_path / "events.csv", ColumnMapping(user="nope", item="sku", timestamp="when"))
    formatted = df.assign(when=["02/01/2024", "01/01/2024", "01/01/2024", "31/12/2023"])
    formatted.to_csv(tmp_path / "days.tsv", sep="\t", index=False)
    days = load_table(tmp_path / "days.tsv", ColumnMapping(user="visitor", item="sku", timestamp="when",
                                                            feedback=("clicked",), timestamp_format="%d/%m/%Y"))  # fmt: skip
    assert days.frame.timestamp.min() == pd.Timestamp("2023-12-31").timestamp()


def test_load_dispatch_errors(tmp_path):
    with pytest.raises(DataError, match="nowhere.csv: no such file"):
        load(tmp_path / "nowhere.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty.csv: empty file"):
        load(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("user_id,item_id,timestamp\n")
    with pytest.raises(DataError, match="header.csv: no data rows"):
        load(tmp_path / "header.csv")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="notes.txt: unknown file layout"):
        load(tmp_path / "notes.txt")
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "readme.md").write_text("x")
    with pytest.raises(DataError, match="odd: unknown file layout"):
        load(odd)


def test_load_reads_parquet_written_by_to_parquet(tmp_path):
    df = pd.DataFrame({"user_id": [1, 1], "item_id": [5, 6], "timestamp": [1.0, 2.0], "rating": [1.0, 2.0]})
    data = LoggedInteractions.from_frame(df, name="mine")
    data.to_parquet(tmp_path / "x.parquet")
    back = load(tmp_path / "x.parquet")
    assert back.name == "mine"
    pd.testing.assert_frame_equal(back.frame, data.frame)
