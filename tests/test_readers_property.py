"""Property-based tests of the readers: any file gives valid Interactions or one DataError.

For arbitrary bytes, arbitrary delimited text (separators, quoting, unicode, numbers
including nan/inf/huge) and Parquet written from random frames, `read_interactions` either
returns Interactions whose ratings are finite and plausible, whose ids are never null, whose
tensors agree in length and whose rows are all accounted for (kept + blank lines + merged
duplicates = records read), or raises `DataError`. Never any other exception.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from recotorch.data.errors import DataError
from recotorch.data.interactions import Interactions
from recotorch.data.readers import MAX_ABS_RATING, read_columns, read_interactions

SETTINGS = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory(prefix="recotorch-prop-") as tmp:
        yield Path(tmp)


def read_or_refuse(path: Path, **kwargs) -> Interactions | None:
    """The reader's answer; None when it refused with a DataError (any other exception fails)."""
    try:
        data = read_interactions(path, **kwargs)
    except DataError as err:
        assert str(err).startswith(path.name), str(err)  # every refusal names the file
        event(f"refused: {err.message.split(':')[0][:40]}")
        return None
    event("read")
    return data


def assert_valid(data: Interactions) -> None:
    n = len(data)
    assert n > 0 and data.item_idx.numel() == n
    for t in (data.rating, data.timestamp):
        assert t is None or t.numel() == n
    if data.rating is not None:
        assert bool(data.rating.isfinite().all())
        assert float(data.rating.abs().max()) <= MAX_ABS_RATING
    for vocab in (data.users, data.items):
        assert vocab.ids.null_count() == 0 and vocab.ids.n_unique() == len(vocab)
    assert int(data.user_idx.min()) >= 0 and int(data.item_idx.min()) >= 0
    pairs = data.user_idx * data.n_items + data.item_idx
    assert pairs.unique().numel() == n  # duplicates merged
    meta = data.meta
    assert meta["rows_read"] == n + meta["blank_lines_skipped"] + meta["duplicates_aggregated"]


# ---- arbitrary bytes -------------------------------------------------------------------------
@SETTINGS
@given(content=st.one_of(st.binary(min_size=0, max_size=400),
                         st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
                         st.text(",;\t\n0123456789.-e\"ab", max_size=300).map(lambda t: gzip.compress(t.encode())),
                         st.binary(max_size=200).map(lambda b: gzip.compress(b)[: max(1, len(b) // 2)])),
       name=st.sampled_from(["r.csv", "r.tsv", "r.txt", "r.dat", "r.csv.gz"]),
       has_header=st.booleans(), implicit=st.booleans())
def test_arbitrary_bytes(folder, content, name, has_header, implicit):
    path = folder / name
    path.write_bytes(content)
    cols = {"rating": None, "timestamp": None} if implicit else {"timestamp": None}
    if not has_header:
        cols = {"user": 0, "item": 1, **({"rating": None} if implicit else {"rating": 2}), "timestamp": None}
    data = read_or_refuse(path, has_header=has_header, **cols)
    if data is not None:
        assert_valid(data)


# ---- arbitrary delimited text ----------------------------------------------------------------
NUMBERS = st.one_of(
    st.integers(-10**25, 10**25).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1e300", "-1e309", "1e9", "1e9.5", "0x10",
                     " 3 ", "", "3,5", "1_000", "+4", ".5", "5.", "--1", "true"]),
)
CELLS = st.one_of(NUMBERS, st.text(max_size=8), st.sampled_from(['"', '""', "\n", "\r\n", "a\"b", " ", "\x00"]))


@st.composite
def delimited(draw):
    sep = draw(st.sampled_from([",", ";", "\t", "|", "::"]))
    width = draw(st.integers(2, 5))
    rows = draw(st.lists(st.lists(CELLS, min_size=width, max_size=width), min_size=0, max_size=25))
    header = ["user", "item", "rating", "timestamp", "extra"][:width]
    if sep == "::":
        lines = [sep.join(header)] + [sep.join(r) for r in rows]
        text = "\n".join(lines) + draw(st.sampled_from(["", "\n", "\n\n"]))
    else:
        quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]))
        buf = io.StringIO(newline="")
        csv.writer(buf, delimiter=sep, quoting=quoting, lineterminator=draw(st.sampled_from(["\n", "\r\n"]))
                   ).writerows([header, *rows])
        text = buf.getvalue()
    return sep, width, text


@SETTINGS
@given(spec=delimited(), give_sep=st.booleans())
def test_arbitrary_delimited_text(folder, spec, give_sep):
    sep, width, text = spec
    path = folder / "ratings.txt"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    kwargs = {"rating": "rating" if width >= 3 else None, "timestamp": "timestamp" if width >= 4 else None}
    data = read_or_refuse(path, sep=sep if give_sep else None, **kwargs)
    if data is not None:
        assert_valid(data)


# ---- well-formed files with plausible values are always read, value for value -----------------
INT_IDS = st.integers(-10**6, 10**12).map(str)
TEXT_IDS = st.text("abcxyzé日本-_. 0123456789", min_size=0, max_size=6).map(lambda t: "u" + t.strip())
RATINGS = st.floats(-MAX_ABS_RATING, MAX_ABS_RATING, allow_nan=False, width=32)


@st.composite
def plausible_rows(draw):
    users = draw(st.sampled_from([INT_IDS, TEXT_IDS]))
    items = draw(st.sampled_from([INT_IDS, TEXT_IDS]))
    return draw(st.lists(st.tuples(users, items, RATINGS, st.integers(-2**40, 2**40)), min_size=1, max_size=30))


@SETTINGS
@given(rows=plausible_rows(), sep=st.sampled_from([",", "\t", ";", "|"]),
       blank_at=st.lists(st.integers(0, 30), max_size=3),
       quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
def test_plausible_files_are_read_exactly(folder, rows, sep, blank_at, quoting):
    buf = io.StringIO(newline="")
    csv.writer(buf, delimiter=sep, quoting=quoting, lineterminator="\n").writerows(
        [("user", "item", "rating", "timestamp"), *((u, i, repr(r), t) for u, i, r, t in rows)])
    lines = buf.getvalue().split("\n")[:-1]
    for k in sorted(set(blank_at), reverse=True):
        lines.insert(1 + min(k, len(lines) - 1), "")
    path = folder / "plausible.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = read_interactions(path, sep=sep)
    assert_valid(data)
    assert data.meta["rows_read"] == len(rows) + len(set(blank_at))
    latest: dict[tuple[str, str], tuple] = {}
    for u, i, r, t in rows:
        if (u, i) not in latest or t >= latest[(u, i)][1]:
            latest[(u, i)] = (r, t)
    got = {(str(u), str(i)): (r, t) for u, i, r, t in data.to_frame().rows()}
    assert got.keys() == latest.keys()
    for key, (r, t) in latest.items():
        assert got[key][1] == t and math.isclose(got[key][0], r, rel_tol=1e-6, abs_tol=1e-30)


# ---- Parquet written from random frames ----------------------------------------------------------
@st.composite
def frames(draw):
    n = draw(st.integers(0, 20))

    def values(strategy):
        element = st.one_of(st.none(), strategy) if draw(st.integers(0, 4)) == 0 else strategy
        return draw(st.lists(element, min_size=n, max_size=n))

    kinds = {
        "id": [(st.integers(-2**63, 2**63 - 1), pl.Int64), (st.integers(0, 2**64 - 1), pl.UInt64),
               (st.integers(-100, 100), pl.Int8), (st.text(max_size=5), pl.String),
               (st.floats(), pl.Float64), (st.booleans(), pl.Boolean), (st.none(), pl.Null)],
        "rating": [(st.floats(), pl.Float64), (st.floats(width=32), pl.Float32),
                   (st.integers(-2**63, 2**63 - 1), pl.Int64), (st.booleans(), pl.Boolean),
                   (st.text(max_size=6), pl.String), (st.none(), pl.Null)],
        "timestamp": [(st.integers(-2**63, 2**63 - 1), pl.Int64), (st.integers(0, 2**64 - 1), pl.UInt64),
                      (st.floats(), pl.Float64), (st.text(max_size=12), pl.String),
                      (st.datetimes(), pl.Datetime("us")), (st.dates(), pl.Date), (st.none(), pl.Null)],
    }
    cols = {}
    for name, kind in (("user", "id"), ("item", "id"), ("rating", "rating"), ("timestamp", "timestamp")):
        strategy, dtype = draw(st.sampled_from(kinds[kind]))
        cols[name] = pl.Series(name, values(strategy), dtype=dtype)
    return pl.DataFrame(cols)


@SETTINGS
@given(frame=frames(), implicit=st.booleans())
def test_parquet_from_random_frames(folder, frame, implicit):
    path = folder / "random.parquet"
    frame.write_parquet(path)
    data = read_or_refuse(path, **({"rating": None, "timestamp": None} if implicit else {}))
    if data is not None:
        assert_valid(data)
        assert data.meta["rows_read"] == frame.height


@SETTINGS
@given(content=st.binary(max_size=300), cut=st.integers(0, 2000))
def test_damaged_parquet(folder, content, cut):
    good = folder / "good.parquet"
    pl.DataFrame({"user": list(range(50)), "item": list(range(50)), "rating": [1.0] * 50}).write_parquet(good)
    raw = good.read_bytes()
    cut = cut % len(raw)
    damaged = raw[:cut] + content + raw[cut + len(content):]
    path = folder / "damaged.parquet"
    path.write_bytes(damaged[: len(raw)])
    data = read_or_refuse(path, timestamp=None)
    if data is not None:
        assert_valid(data)


# ---- the id-column reader the CLI uses -------------------------------------------------------------
@SETTINGS
@given(spec=delimited())
def test_read_columns_on_arbitrary_text(folder, spec):
    sep, _, text = spec
    path = folder / "pairs.txt"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        frame = read_columns(path, ["user", "item"], sep=sep)
    except DataError as err:
        assert str(err).startswith("pairs.txt")
        return
    assert frame.columns == ["user", "item"] and frame.height > 0
    assert frame.null_count().row(0) == (0, 0)
