"""read_interactions / write_interactions: formats, id types, duplicates, and every validation error."""

from __future__ import annotations

import gzip
import logging
import os
import pickle
import random
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from recotorch.data import errors
from recotorch.data.errors import DataError, first_undecodable
from recotorch.data.readers import MAX_ABS_RATING, file_columns, read_columns, read_interactions, write_interactions
from recotorch.errors import InputFileError, OptionError

HEADER = "user,item,rating,timestamp\n"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def fails(path: Path, **kwargs) -> DataError:
    with pytest.raises(DataError) as info:
        read_interactions(path, **kwargs)
    return info.value


def rows(data) -> list[tuple]:
    return data.to_frame().rows()


# ---- reading ---------------------------------------------------------------------------------
def test_csv_with_all_columns(tmp_path):
    data = read_interactions(write(tmp_path, "r.csv", HEADER + "1,10,4.5,100\n2,11,3,200\n"))
    assert rows(data) == [(1, 10, 4.5, 100), (2, 11, 3.0, 200)]
    assert data.users.ids.dtype == pl.Int64 and data.items.ids.dtype == pl.Int64
    assert data.meta["duplicates_aggregated"] == 0 and data.meta["origin"].startswith("file ")


def test_string_ids_stay_strings_and_leading_zeros_are_kept(tmp_path):
    path = write(tmp_path, "r.csv", "user,item\nu1,007\nu2,8\n")
    data = read_interactions(path, rating=None, timestamp=None)
    assert data.users.lookup([0, 1]) == ["u1", "u2"]
    assert data.items.lookup([0, 1]) == ["007", "8"]  # "007" is not the number 7
    assert data.rating is None and data.timestamp is None


def test_late_string_id_makes_the_whole_column_strings(tmp_path):
    # the first 1000 rows look like integers: the typed fast path must not swallow "u9"
    body = "".join(f"{i},{i % 7}\n" for i in range(1500)) + "u9,3\n"
    data = read_interactions(write(tmp_path, "r.csv", "user,item\n" + body), rating=None, timestamp=None)
    assert data.users.ids.dtype == pl.String
    assert data.users.lookup([0, 1500]) == ["0", "u9"]
    assert data.items.ids.dtype == pl.Int64


def test_named_columns_and_implicit_data(tmp_path):
    path = write(tmp_path, "r.csv", "movieId,userId,when\n5,1,10\n6,1,20\n")
    data = read_interactions(path, user="userId", item="movieId", rating=None, timestamp="when")
    assert rows(data) == [(1, 5, 10), (1, 6, 20)]


@pytest.mark.parametrize(("name", "text", "kwargs"), [
    ("r.tsv", "user\titem\trating\ttimestamp\n1\t2\t3\t4\n", {}),
    ("r.txt", "user;item;rating;timestamp\n1;2;3;4\n", {}),
    ("r.dat", "1::2::3::4\n", {"has_header": False}),
    ("r.data", "1|2|3|4\n", {"has_header": False}),
    ("r.csv", "1 2 3 4\n", {"has_header": False, "sep": " "}),
])
def test_separators_from_extension_sniffing_or_argument(tmp_path, name, text, kwargs):
    assert rows(read_interactions(write(tmp_path, name, text), **kwargs)) == [(1, 2, 3.0, 4)]


def test_headerless_columns_by_position(tmp_path):
    path = write(tmp_path, "r.tsv", "9\t1\t2\t5\n9\t3\t4\t4\n")
    data = read_interactions(path, has_header=False, user=1, item=3, rating=None, timestamp=None)
    assert rows(data) == [(1, 5), (3, 4)]


def test_crlf_and_bom(tmp_path):
    path = write(tmp_path, "r.csv", b"\xef\xbb\xbfuser,item,rating,timestamp\r\n1,2,3,4\r\n")
    assert rows(read_interactions(path)) == [(1, 2, 3.0, 4)]


def test_iso_timestamps_become_epoch_seconds(tmp_path):
    path = write(tmp_path, "r.csv", HEADER + "1,1,3,2020-01-01T00:00:00Z\n1,2,3,2020-01-01 01:00:00+01:00\n"
                 "1,3,3,2020-01-01\n1,4,3,2020-01-01T00:00:30.5\n")
    assert read_interactions(path).timestamp.tolist() == [1577836800] * 3 + [1577836830]


def test_whole_float_timestamps_and_padded_values(tmp_path):
    path = write(tmp_path, "r.csv", HEADER + "1,2, 4 ,881250949.0\n")
    assert rows(read_interactions(path)) == [(1, 2, 4.0, 881250949)]


def test_latin1_file_with_encoding(tmp_path):
    path = write(tmp_path, "r.csv", "user,item\nanna,café\n".encode("latin-1"))
    data = read_interactions(path, rating=None, timestamp=None, encoding="latin1")
    assert data.items.lookup([0]) == ["café"]


def test_quoted_fields(tmp_path):
    path = write(tmp_path, "r.csv", 'user,item\n1,"a, b"\n2,"say ""hi"""\n')
    assert read_interactions(path, rating=None, timestamp=None).items.lookup([0, 1]) == ["a, b", 'say "hi"']


def test_blank_lines_are_skipped_and_counted(tmp_path, caplog):
    path = write(tmp_path, "r.csv", HEADER + "1,2,3,4\n\n5,6,7,8\n\n")
    with caplog.at_level(logging.WARNING, logger="recotorch"):
        data = read_interactions(path)
    assert len(data) == 2 and data.meta["blank_lines_skipped"] == 2
    assert "blank" in caplog.text


def test_real_u_data(ml100k_dir):
    data = read_interactions(ml100k_dir / "u.data", has_header=False, rating_range=(1, 5))
    assert (len(data), data.n_users, data.n_items) == (100_000, 943, 1_682)
    assert rows(data)[0] == (196, 242, 3.0, 881250949)


# ---- duplicates ----------------------------------------------------------------------------
def test_duplicates_are_aggregated_keeping_the_latest_rating(tmp_path, caplog):
    path = write(tmp_path, "r.csv", HEADER + "2,2,2,500\n1,2,5,300\n1,3,1,10\n1,2,4,100\n1,2,3,300\n"
                 "2,2,9,5\n")
    with caplog.at_level(logging.INFO, logger="recotorch"):
        data = read_interactions(path)
    # (2,2): the later line is older, so the first stays; (1,2) at t=300 twice: the tie goes to
    # the later line; each pair sits at its latest row, in file order
    assert rows(data) == [(2, 2, 2.0, 500), (1, 3, 1.0, 10), (1, 2, 3.0, 300)]
    assert data.count.tolist() == [2, 1, 3] and data.value_sum.tolist() == [11.0, 1.0, 12.0]
    assert (data.meta["rows_in"], data.meta["pairs_out"], data.meta["duplicates_aggregated"]) == (6, 3, 3)
    assert "3 repeat rows aggregated" in caplog.text and "r.csv" in caplog.text
    assert len(caplog.records) == 1  # said once


def test_duplicates_without_timestamps_keep_the_last_line(tmp_path):
    path = write(tmp_path, "r.csv", "user,item,rating\na,x,1\nb,x,2\na,x,3\n")
    data = read_interactions(path, timestamp=None)
    assert rows(data) == [("b", "x", 2.0), ("a", "x", 3.0)]
    assert data.count.tolist() == [1, 2] and data.meta["duplicates_aggregated"] == 1


def test_duplicates_can_be_kept_as_rows(tmp_path):
    path = write(tmp_path, "r.csv", "user,item,rating\na,x,1\nb,x,2\na,x,3\n")
    data = read_interactions(path, timestamp=None, duplicates="keep")
    assert len(data) == 3 and data.count is None and data.meta["duplicates"] == "kept"


# ---- every validation error names file, line and column -----------------------------------
@pytest.mark.parametrize(("body", "line", "column", "message"), [
    ("1,2,3,4\n2,3,abc,5\n", 3, "rating", "not a number: 'abc'"),
    ("1,2,3,4\n2,3,NaN,5\n", 3, "rating", "rating is NaN"),
    ("1,2,3,4\n2,3,,5\n", 3, "rating", "missing rating"),
    ("1,2,3,4\n2,3,inf,5\n", 3, "rating", "not a finite number"),
    ("1,2,3,4\n2,3,4,5\n3,4,9,6\n", 4, "rating", "rating 9 is outside rating_range (1, 5)"),
    ("1,2,3,4\n,3,4,5\n", 3, "user", "missing user id"),
    ("1,2,3,4\n2,,4,5\n", 3, "item", "missing item id"),
    ("u1,2,3,4\n  ,3,4,5\n", 3, "user", "missing user id"),
    ("1,2,3,4\n2,3,4,yesterday\n", 3, "timestamp", "not a timestamp: 'yesterday'"),
    ("1,2,3,4\n2,3,4,\n", 3, "timestamp", "missing timestamp"),
    ("1,2,3,4\n2,3\n", 3, "rating", "missing rating"),
])
def test_bad_values(tmp_path, body, line, column, message):
    err = fails(write(tmp_path, "ratings.csv", HEADER + body), rating_range=(1, 5))
    assert (err.line, err.column) == (line, column)
    assert message in str(err)
    assert str(err).startswith(f"ratings.csv, line {line}, column '{column}': ")


def test_bad_value_after_the_typed_sample_is_found_by_line(tmp_path):
    body = "".join(f"{i},{i},3,{i}\n" for i in range(2000)) + "5,5,x,5\n"
    err = fails(write(tmp_path, "ratings.csv", HEADER + body))
    assert str(err) == "ratings.csv, line 2002, column 'rating': not a number: 'x'"


def test_first_bad_row_wins_across_columns(tmp_path):
    err = fails(write(tmp_path, "r.csv", HEADER + "1,2,3,4\n1,2,3,never\n1,2,bad,4\n"))
    assert (err.line, err.column) == (3, "timestamp")


def test_line_numbers_count_quoted_line_breaks(tmp_path):
    err = fails(write(tmp_path, "r.csv", 'user,item,rating\n1,"two\nlines",3\n2,x,oops\n'), timestamp=None)
    assert (err.line, err.column) == (4, "rating")


def test_line_numbers_count_blank_lines(tmp_path):
    err = fails(write(tmp_path, "r.csv", HEADER + "1,2,3,4\n\n2,3,zz,5\n"))
    assert err.line == 4


def test_missing_column_lists_the_columns(tmp_path):
    err = fails(write(tmp_path, "ratings.csv", "userId,movieId,rating\n1,2,3\n"), user="userId")
    assert (err.line, err.column) == (1, "item")
    assert "no column 'item'" in str(err) and "'userId', 'movieId', 'rating'" in str(err)
    err = fails(write(tmp_path, "r2.csv", "user,item,rating\n1,2,3\n"))
    assert "timestamp=None" in str(err)


def test_position_beyond_the_fields(tmp_path):
    err = fails(write(tmp_path, "r.tsv", "1\t2\n"), has_header=False)
    assert err.line == 1 and "rating is column 3" in str(err) and "2 field" in str(err)


@pytest.mark.parametrize(("content", "message"), [
    (b"", "the file is empty"),
    (b"\n\n", "the file holds only blank lines"),
    (HEADER.encode(), "no data rows after the header"),
    (HEADER.encode() + b"\n\n", "no data rows after the header"),
])
def test_empty_files(tmp_path, content, message):
    err = fails(write(tmp_path, "ratings.csv", content))
    assert str(err) == f"ratings.csv: {message}"


def test_undecodable_byte_names_line_and_column_and_suggests_latin1(tmp_path):
    content = (HEADER + "1,2,3,4\n").encode() + "2,caf\xe9,3,4\n".encode("latin-1")
    err = fails(write(tmp_path, "ratings.csv", content))
    assert (err.line, err.column) == (3, "item")
    assert "0xe9" in str(err) and 'encoding="latin1"' in str(err)


def test_undecodable_byte_in_another_encoding(tmp_path):
    err = fails(write(tmp_path, "r.csv", b"user,item\n1,2\n3,\x81\n"), encoding="cp1252",
                rating=None, timestamp=None)
    assert (err.line, err.column) == (3, "item") and "'cp1252'" in str(err)


def test_undecodable_search_across_chunk_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(errors, "_CHUNK", 5)
    path = write(tmp_path, "x.txt", "ab\ncé\nxyzé\n".encode() + b"q\nw\xffz\n")
    assert first_undecodable(path, "utf-8") == (5, 0xFF, b"w")
    assert first_undecodable(write(tmp_path, "ok.txt", "é" * 20), "utf-8") is None


def test_too_many_fields(tmp_path):
    err = fails(write(tmp_path, "ratings.csv", HEADER + "1,2,3,4\n1,2,3,4,5\n"))
    assert err.line == 3 and "5 fields, but the header has 4" in str(err)


def test_too_many_fields_with_a_multi_character_separator(tmp_path):
    err = fails(write(tmp_path, "ratings.dat", "1::2::3::4\n1::2::3::4::5\n"), has_header=False)
    assert err.line == 2 and "5 fields" in str(err)


def test_unknown_separator(tmp_path):
    err = fails(write(tmp_path, "r.txt", "abc\nde\n"))
    assert err.line == 1 and "sep=" in str(err)


def test_missing_file_is_a_data_error_and_a_file_not_found_error(tmp_path):
    err = fails(tmp_path / "nope.csv")
    assert isinstance(err, FileNotFoundError) and isinstance(err, InputFileError)
    assert str(err) == "nope.csv: no such file"


# ---- parquet -------------------------------------------------------------------------------
def test_parquet_with_native_types(tmp_path):
    path = tmp_path / "r.parquet"
    pl.DataFrame({"u": ["a", "b"], "i": [3, 4], "score": [1.5, 2.0],
                  "at": pl.Series(["2020-01-01", "2020-01-02"]).str.to_datetime()}).write_parquet(path)
    data = read_interactions(path, user="u", item="i", rating="score", timestamp="at")
    assert rows(data) == [("a", 3, 1.5, 1577836800), ("b", 4, 2.0, 1577923200)]


@pytest.mark.parametrize(("frame", "row", "column", "message"), [
    ({"user": [1, 2], "item": [1, None]}, 2, "item", "missing item id"),
    ({"user": [1, 2], "item": [1, 2], "rating": ["4", "x"]}, 2, "rating", "not a number: 'x'"),
    ({"user": [1, 2], "item": [1, 2], "rating": [4.0, float("nan")]}, 2, "rating", "rating is NaN"),
    ({"user": [1, 2], "item": [1, 2], "timestamp": [1.0, 1.5]}, 2, "timestamp", "timestamp 1.5 is not whole"),
])
def test_parquet_errors_name_the_row(tmp_path, frame, row, column, message):
    path = tmp_path / "data.parquet"
    pl.DataFrame(frame).write_parquet(path)
    err = fails(path, rating="rating" if "rating" in frame else None,
                timestamp="timestamp" if "timestamp" in frame else None)
    assert (err.line, err.row, err.column) == (None, row, column)
    assert str(err).startswith(f"data.parquet, row {row}, column '{column}': {message}")


def test_parquet_wrong_types_and_columns(tmp_path):
    path = tmp_path / "data.parquet"
    pl.DataFrame({"user": [1.5], "item": [1]}).write_parquet(path)
    err = fails(path, rating=None, timestamp=None)
    assert err.column == "user" and "integers or strings" in str(err)
    err = fails(path, rating="stars", timestamp=None)
    assert "no column 'stars'" in str(err)
    err = fails(write(tmp_path, "junk.parquet", b"not parquet"))
    assert "not a readable Parquet file" in str(err)


# ---- writing and the error type ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["out.csv", "out.parquet", "out.tsv"])
def test_write_then_read_round_trip(tmp_path, name):
    data = read_interactions(write(tmp_path, "r.csv", HEADER + "u1,7,4.5,100\nu2,8,2,50\n"))
    back = read_interactions(write_interactions(data, tmp_path / name))
    assert rows(back) == rows(data)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_data_error_is_an_input_file_error_and_pickles():
    err = DataError("/x/ratings.csv", "not a number: 'abc'", line=17, column="rating")
    assert isinstance(err, InputFileError) and isinstance(err, ValueError)
    assert str(err) == "ratings.csv, line 17, column 'rating': not a number: 'abc'"
    again = pickle.loads(pickle.dumps(err))
    assert (str(again), again.line, again.column) == (str(err), 17, "rating")


# ---- files that cannot be used at all: one DataError naming the file -------------------------
def test_a_directory_is_refused(tmp_path):
    (tmp_path / "x.csv").mkdir()
    assert str(fails(tmp_path / "x.csv")) == "x.csv: is a directory, not a file"


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True,
                    reason="root reads files whatever their permissions")
def test_an_unreadable_file_is_refused(tmp_path):
    path = write(tmp_path, "ratings.csv", HEADER + "1,2,3,4\n")
    path.chmod(0)
    try:
        err = fails(path)
    finally:
        path.chmod(0o644)
    assert str(err).startswith("ratings.csv: cannot be read: ") and "ermission" in str(err)


def test_an_unreadable_file_is_refused_even_as_root(tmp_path, monkeypatch):
    path = write(tmp_path, "ratings.csv", HEADER + "1,2,3,4\n")
    real_open = Path.open

    def denied(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)
    assert str(fails(path)) == "ratings.csv: cannot be read: Permission denied"


@pytest.mark.parametrize(("content", "message"), [
    (b"user,item\n1,2\x00\x01\x02\n", "holds a NUL byte: a binary file"),
    (b"PK\x03\x04\x14\x00\x00\x00junk", "is a zip archive"),
    (b"BZh91AY&SY", "is bzip2-compressed"),
])
def test_binary_files_are_refused(tmp_path, content, message):
    err = fails(write(tmp_path, "ratings.csv", content), rating=None, timestamp=None)
    assert str(err).startswith("ratings.csv") and message in str(err)


def test_random_binary_garbage_is_refused(tmp_path):
    garbage = bytes(random.Random(0).randrange(256) for _ in range(5000))
    err = fails(write(tmp_path, "ratings.csv", garbage))
    assert str(err).startswith("ratings.csv")


def test_truncated_and_corrupt_parquet(tmp_path):
    good = tmp_path / "good.parquet"
    pl.DataFrame({"user": list(range(2000)), "item": list(range(2000)),
                  "rating": [3.0] * 2000}).write_parquet(good)
    content = good.read_bytes()
    err = fails(write(tmp_path, "cut.parquet", content[: len(content) // 2]), timestamp=None)
    assert str(err).startswith("cut.parquet: not a readable Parquet file")
    middle = len(content) // 3  # the footer intact, the column data scrambled
    scrambled = content[:8] + bytes(random.Random(1).randrange(256) for _ in range(middle)) + content[8 + middle:]
    err = fails(write(tmp_path, "bad.parquet", scrambled), timestamp=None)
    assert str(err).startswith("bad.parquet")


def test_parquet_is_recognised_by_its_magic_bytes(tmp_path):
    path = tmp_path / "ratings.csv"
    pl.DataFrame({"user": [1], "item": [2]}).write_parquet(path)
    assert rows(read_interactions(path, rating=None, timestamp=None)) == [(1, 2)]


def test_missing_column_suggests_the_closest_name(tmp_path):
    path = write(tmp_path, "ratings.csv", "user,item,ratings,timestamp\n1,2,3,4\n")
    err = fails(path)
    assert "no column 'rating'" in str(err) and "did you mean 'ratings'?" in str(err)
    err = fails(write(tmp_path, "r2.csv", "UserId,item\n1,2\n"), user="userid", rating=None, timestamp=None)
    assert "did you mean 'UserId'?" in str(err)
    pq = tmp_path / "r.parquet"
    pl.DataFrame({"user_id": [1], "item": [2]}).write_parquet(pq)
    assert "did you mean 'user_id'?" in str(fails(pq, rating=None, timestamp=None))


def test_a_wrong_separator_is_pointed_out(tmp_path):
    err = fails(write(tmp_path, "ratings.csv", "user;item\n1;2\n"), sep=",", rating=None, timestamp=None)
    assert "the header reads as one field: is the separator right (sep=...)?" in str(err)


@pytest.mark.parametrize("sep", ["", '"', "\n", "a\r"])
def test_impossible_separators_are_option_errors(tmp_path, sep):
    with pytest.raises(OptionError, match="sep"):
        read_interactions(write(tmp_path, "r.csv", "a,b\n1,2\n"), sep=sep)


def test_two_roles_on_one_column_is_an_option_error(tmp_path):
    with pytest.raises(OptionError, match="item"):
        read_interactions(write(tmp_path, "r.csv", "a,b\n1,2\n"), user="a", item="a", rating=None, timestamp=None)


@pytest.mark.parametrize(("value", "message"), [
    ("1e300", "rating 1e+300 is absurd"),
    ("-2e9", "rating -2e+09 is absurd"),
    ("-inf", "rating is not a finite number"),
    ("nan", "rating is NaN"),
])
def test_absurd_and_non_finite_ratings_are_refused_with_their_line(tmp_path, value, message):
    err = fails(write(tmp_path, "ratings.csv", HEADER + f"1,2,3,4\n2,3,{value},5\n"))
    assert (err.line, err.column) == (3, "rating") and message in str(err)


def test_the_largest_plausible_rating_is_read(tmp_path):
    path = write(tmp_path, "r.csv", HEADER + f"1,2,{MAX_ABS_RATING:.0f},4\n1,3,-{MAX_ABS_RATING:.0f},4\n")
    assert read_interactions(path).rating.tolist() == [MAX_ABS_RATING, -MAX_ABS_RATING]


def test_parquet_huge_values_are_refused_not_crashed(tmp_path):
    path = tmp_path / "r.parquet"
    pl.DataFrame({"user": [1, 2], "item": [1, 2], "rating": [1.0, 1e300], "timestamp": [0.0, 1e30]}).write_parquet(path)
    err = fails(path)
    assert (err.row, err.column) == (2, "rating") and "absurd" in str(err)
    pl.DataFrame({"user": [1, 2], "item": [1, 2], "timestamp": [0.0, 1e30]}).write_parquet(path)
    err = fails(path, rating=None)
    assert (err.row, err.column) == (2, "timestamp") and "out of range" in str(err)
    pl.DataFrame({"user": pl.Series([1, 2**64 - 1], dtype=pl.UInt64), "item": [1, 2]}).write_parquet(path)
    err = fails(path, rating=None, timestamp=None)
    assert (err.row, err.column) == (2, "user") and "too large" in str(err)
    pl.DataFrame({"user": [None, None], "item": [1, 2]}).write_parquet(path)
    err = fails(path, rating=None, timestamp=None)
    assert (err.row, err.column) == (1, "user") and "missing user id" in str(err)


def test_nul_bytes_in_ids_are_refused(tmp_path):
    path = tmp_path / "r.parquet"
    pl.DataFrame({"user": ["a", "b\x00c"], "item": ["x", "y"]}).write_parquet(path)
    err = fails(path, rating=None, timestamp=None)
    assert (err.row, err.column) == (2, "user") and "NUL" in str(err)


def test_a_row_of_empty_fields_is_not_a_blank_line(tmp_path):
    # ",," reads as nulls like an empty line does; it must be reported, not skipped
    err = fails(write(tmp_path, "ratings.csv", "x,user,item\n1,2,3\n\n5,,\n"), rating=None, timestamp=None)
    assert (err.line, err.column) == (4, "user") and "missing user id" in str(err)
    err = fails(write(tmp_path, "r.dat", "1::2\n\n::\n"), has_header=False, rating=None, timestamp=None)
    assert (err.line, err.column) == (3, "user")


def test_leading_blank_lines_keep_line_numbers_right(tmp_path):
    err = fails(write(tmp_path, "ratings.csv", "\n\n" + HEADER + "1,2,3,4\n1,2,x,4\n"))
    assert err.line == 5


def test_every_row_is_accounted_for(tmp_path):
    data = read_interactions(write(tmp_path, "r.csv", HEADER + "1,2,3,4\n\n1,2,4,5\n3,4,5,6\n\n"))
    assert data.meta["rows_read"] == 5
    assert (len(data), data.meta["blank_lines_skipped"], data.meta["duplicates_aggregated"]) == (2, 2, 1)


# ---- file names are literal; compressed text ---------------------------------------------------
def test_file_names_are_not_glob_patterns(tmp_path):
    write(tmp_path, "rat1.csv", HEADER + "9,9,1,1\n8,8,1,1\n")
    literal = write(tmp_path, "rat[1].csv", HEADER + "1,2,3,4\n")
    assert rows(read_interactions(literal)) == [(1, 2, 3.0, 4)]
    assert file_columns(literal) == ["user", "item", "rating", "timestamp"]
    err = fails(tmp_path / "*.csv")
    assert isinstance(err, FileNotFoundError)
    pl.DataFrame({"user": [5], "item": [6]}).write_parquet(tmp_path / "p1.parquet")
    pl.DataFrame({"u": [1], "i": [2]}).write_parquet(tmp_path / "p[1].parquet")
    assert rows(read_interactions(tmp_path / "p[1].parquet", user="u", item="i", rating=None,
                                  timestamp=None)) == [(1, 2)]


@pytest.mark.parametrize("name", ["r.csv.gz", "r.tsv.gz", "r.csv.zst", "r.csv"])
def test_compressed_text_is_read(tmp_path, name):
    sep = "\t" if ".tsv" in name else ","
    text = (HEADER + "1,2,3,4\n5,6,7,8\n").replace(",", sep).encode()
    packed = pa.compress(text, codec="zstd", asbytes=True) if ".zst" in name else gzip.compress(text)
    path = write(tmp_path, name, packed)  # "r.csv" holds gzip: the magic bytes decide
    assert rows(read_interactions(path)) == [(1, 2, 3.0, 4), (5, 6, 7.0, 8)]
    assert file_columns(path) == ["user", "item", "rating", "timestamp"]
    assert list(tmp_path.iterdir()) == [path]  # the decompressed copy lived elsewhere and is gone


def test_errors_in_compressed_text_name_the_file_and_line(tmp_path):
    path = write(tmp_path, "ratings.csv.gz", gzip.compress((HEADER + "1,2,3,4\n1,3,abc,4\n").encode()))
    assert str(fails(path)) == "ratings.csv.gz, line 3, column 'rating': not a number: 'abc'"
    cut = write(tmp_path, "cut.csv.gz", gzip.compress((HEADER + "1,2,3,4\n" * 500).encode())[:-20])
    assert "truncated or corrupt" in str(fails(cut))
    empty = write(tmp_path, "empty.csv.gz", gzip.compress(b""))
    assert "empty" in str(fails(empty))


# ---- the helpers the CLI uses --------------------------------------------------------------------
def test_file_columns(tmp_path):
    assert file_columns(write(tmp_path, "r.tsv", "a\tb\n1\t2\n")) == ["a", "b"]
    assert file_columns(write(tmp_path, "r.txt", "1;2;3\n"), has_header=False) == ["column 1", "column 2", "column 3"]
    pq = tmp_path / "r.parquet"
    pl.DataFrame({"x": [1], "y": [2]}).write_parquet(pq)
    assert file_columns(pq) == ["x", "y"]
    for bad, message in ((tmp_path / "none.csv", "no such file"), (tmp_path, "is a directory"),
                         (write(tmp_path, "e.csv", b""), "the file is empty")):
        with pytest.raises(DataError, match=message):
            file_columns(bad)


def test_read_columns(tmp_path):
    path = write(tmp_path, "pairs.csv", "user,item,extra\n1,x,9\n\n2, y ,9\n1,x,9\n")
    frame = read_columns(path, ["user", "item"])
    assert frame.columns == ["user", "item"] and frame.rows() == [(1, "x"), (2, "y"), (1, "x")]
    assert read_columns(path, ["item"])["item"].to_list() == ["x", "y", "x"]
    with pytest.raises(DataError) as info:
        read_columns(path, ["user", "itme"])
    assert "did you mean 'item'?" in str(info.value)
    bad = write(tmp_path, "users.csv", "user,x\n1,2\n\n,3\n")
    with pytest.raises(DataError) as info:
        read_columns(bad, ["user"])
    assert str(info.value) == "users.csv, line 4, column 'user': missing value"
    with pytest.raises(DataError, match="no data rows"):
        read_columns(write(tmp_path, "h.csv", "user\n"), ["user"])
    with pytest.raises(OptionError, match="named twice"):
        read_columns(path, ["user", "user"])
    named = write(tmp_path, "names.csv", "item,name\n1, Toy Story \n2,\n")  # a blank name is data, not an id
    frame = read_columns(named, ["item", "name"], as_read=["name"])
    assert frame["item"].to_list() == [1, 2] and frame["name"].to_list()[0] == " Toy Story "
    with pytest.raises(DataError, match="line 3, column 'name'"):
        read_columns(named, ["item", "name"])
