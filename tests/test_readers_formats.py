"""The readers' formats and layouts: JSON Lines, `format=`, options refused where they do nothing, `flags`."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from recotorch.data.errors import DataError
from recotorch.data.readers import file_columns, file_layout, read_columns, read_interactions
from recotorch.errors import OptionError

REVIEWS = [{"reviewerID": "A1", "asin": "B01", "overall": 5.0, "unixReviewTime": 1400000000,
            "style": {"Size:": "L"}, "helpful": [1, 2], "reviewText": "good"},
           {"reviewerID": "A2", "asin": "B01", "overall": 4.0, "unixReviewTime": 1400000001, "vote": "3"},
           {"reviewerID": "A2", "asin": "B02", "overall": 3, "unixReviewTime": 1400000002}]
COLS = {"user": "reviewerID", "item": "asin", "rating": "overall", "timestamp": "unixReviewTime"}


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def jsonl(records: list[dict], blank_after: int | None = None) -> str:
    return "".join(json.dumps(r) + "\n" + ("\n" if k == blank_after else "") for k, r in enumerate(records))


def test_json_lines_fields_types_and_blank_lines(tmp_path):
    path = write(tmp_path / "reviews.jsonl", jsonl(REVIEWS, blank_after=0))
    assert file_columns(path)[:4] == ["reviewerID", "asin", "overall", "unixReviewTime"]
    assert "vote" in file_columns(path)  # keys of later records count too
    data = read_interactions(path, **COLS)
    frame = data.to_frame()
    assert frame["user"].to_list() == ["A1", "A2", "A2"] and frame["rating"].to_list() == [5.0, 4.0, 3.0]
    assert frame["timestamp"].to_list() == [1400000000, 1400000001, 1400000002]
    assert data.meta["rows_read"] == 4 and data.meta["blank_lines_skipped"] == 1


def test_gzipped_json_lines_without_a_telling_name_are_recognised(tmp_path):
    path = write(tmp_path / "reviews_Books_5", gzip.compress(jsonl(REVIEWS).encode()))
    assert file_layout(path) == ("jsonl", None)
    assert len(read_interactions(path, **COLS)) == 3


@pytest.mark.parametrize(("text", "line", "what"), [
    ('{"u": 1, "i": 2}\n{"u": 1, "i"\n', 2, "not valid JSON"),
    ('{"u": 1, "i": 2}\n[1, 2]\n', 2, "JSON object"),
    ('{"u": 1, "i": 2}\n\n{"u": 2, "i": 1e400}\n', 3, "out of range"),
])
def test_a_bad_json_line_is_named(tmp_path, text, line, what):
    with pytest.raises(DataError, match=what) as info:
        read_interactions(write(tmp_path / "x.jsonl", text), user="u", item="i", rating=None, timestamp=None)
    assert info.value.line == line


def test_a_bad_value_in_json_lines_is_named_by_line_and_field(tmp_path):
    records = [*REVIEWS[:2], {**REVIEWS[2], "overall": "five"}]
    with pytest.raises(DataError, match="not a number") as info:
        read_interactions(write(tmp_path / "x.jsonl", jsonl(records, blank_after=0)), **COLS)
    assert (info.value.line, info.value.column) == (4, "overall")


def test_a_json_array_and_numbered_fields_are_refused(tmp_path):
    with pytest.raises(DataError, match="JSON array"):
        file_columns(write(tmp_path / "x.json", json.dumps(REVIEWS)))
    path = write(tmp_path / "x.jsonl", jsonl(REVIEWS))
    with pytest.raises(OptionError, match="named, not numbered"):
        read_interactions(path, user=0, item="asin", rating=None, timestamp=None)


def test_format_overrides_the_name_and_is_checked_against_the_content(tmp_path):
    text = "u;i\n1;2\n3;4\n"
    path = write(tmp_path / "x.tsv", text.replace(";", ","))
    assert read_interactions(path, user="u", item="i", rating=None, timestamp=None, format="csv").n_users == 2
    assert file_layout(path, format="csv") == ("csv", ",")
    pq = tmp_path / "x.csv"
    pl.DataFrame({"u": [1, 2], "i": [3, 4]}).write_parquet(pq)
    with pytest.raises(DataError, match="is a Parquet file, not csv"):
        read_interactions(pq, user="u", item="i", rating=None, format="csv")
    with pytest.raises(DataError, match="not a Parquet file"):
        read_interactions(path, user="u", item="i", rating=None, format="parquet")
    with pytest.raises(OptionError, match="format"):
        read_interactions(path, format="xlsx")


def test_text_options_are_refused_for_parquet_and_json_lines(tmp_path):
    pq = tmp_path / "x.parquet"
    pl.DataFrame({"user": [1], "item": [2]}).write_parquet(pq)
    with pytest.raises(OptionError, match="sep"):
        read_interactions(pq, sep=",")
    with pytest.raises(OptionError, match="has_header"):
        read_interactions(write(tmp_path / "x.jsonl", jsonl(REVIEWS)), has_header=False, **COLS)


def test_tsv_named_txt_or_data_is_sniffed_not_read_with_commas(tmp_path):
    for name in ("r.txt", "r.data", "r"):
        path = write(tmp_path / name, "user\titem\trating\n1\t2\t4.5\n2\t3\t1,5\n")
        assert file_layout(path) == ("text", "\t")
        with pytest.raises(DataError, match="not a number"):  # "1,5" stays one field of the rating column
            read_interactions(path, timestamp=None)


def test_tabs_in_varying_numbers_beside_another_candidate_are_not_guessed(tmp_path):
    path = write(tmp_path / "r.txt", "user;item\tx\n1;2\t\t\n3;4\t\n")
    with pytest.raises(DataError, match=r"cannot tell the field separator.*--sep SEP"):
        read_interactions(path, flags={"sep": "--sep"})
    assert len(read_interactions(path, sep=";", item=1, rating=None, timestamp=None)) == 2


def test_flags_name_the_options_in_messages(tmp_path):
    flags = {"user": "--user-col", "rating": "--rating-col", "sep": "--sep", "has_header": "--no-header"}
    path = write(tmp_path / "r.csv", "usr,item,stars\n1,2,3\n")
    with pytest.raises(DataError, match="did you mean 'usr'\\? choose it with --user-col NAME") as info:
        read_interactions(path, user="user", flags=flags)
    assert "user=" not in str(info.value)
    with pytest.raises(DataError, match="--rating-col ''"):
        read_interactions(path, user="usr", rating="rating", flags=flags)
    data_first = write(tmp_path / "u.data", "1\t2\t3\n4\t5\t6\n")
    with pytest.raises(DataError, match="looks like data, not a header: pass --no-header"):
        read_interactions(data_first, flags=flags)


def test_read_columns_by_role(tmp_path):
    path = write(tmp_path / "p.tsv", "10\t20\tx\n11\t21\ty\n")
    frame = read_columns(path, {"user": 0, "item": 1}, has_header=False)
    assert frame.columns == ["user", "item"] and frame["item"].to_list() == [20, 21]


def test_columns_of_a_large_compressed_file_come_from_its_start(tmp_path):
    records = [{"reviewerID": f"A{k}", "asin": f"B{k % 97}", "reviewText": "x" * 300} for k in range(40_000)]
    path = write(tmp_path / "big.jsonl.gz", gzip.compress(jsonl(records).encode(), compresslevel=1))
    assert file_columns(path) == ["reviewerID", "asin", "reviewText"]  # no error at the cut line
    assert len(read_interactions(path, user="reviewerID", item="asin", rating=None, timestamp=None)) == 40_000
