"""MovieLens layouts: the real ml-100k, and ml-1m / ml-10m / ml-20m in the publisher's exact formats."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from recotorch.data.errors import DataError
from recotorch.data.movielens import ML1M_OCCUPATIONS, detect_layout, load_movielens


def item(data, item_id) -> dict:
    return data.item_features.filter(pl.col("id") == item_id).row(0, named=True)


def user(data, user_id) -> dict:
    return data.user_features.filter(pl.col("id") == user_id).row(0, named=True)


def make_1m(root: Path) -> Path:
    """ml-1m as unzipped: a folder ml-1m/ with '::' files, movies.dat in Latin-1."""
    d = root / "ml-1m"
    d.mkdir()
    (d / "ratings.dat").write_bytes(b"1::1193::5::978300760\n1::661::3::978302109\n"
                                    b"2::1193::4::978298413\n2::2858::2::978299000\n")
    (d / "movies.dat").write_bytes(
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "2858::Misérables, Les (1998)::Drama\n"
        "3000::Star Wars: Episode IV - A New Hope (1977)::Action|Sci-Fi\n".encode("latin-1"))
    (d / "users.dat").write_bytes(b"1::F::1::10::48067\n2::M::56::16::70072\n")
    (d / "README").write_text("MovieLens 1M\n")
    return root


def make_10m(root: Path) -> Path:
    d = root / "ml-10M100K"
    d.mkdir()
    (d / "ratings.dat").write_bytes(b"1::122::5::838985046\n1::185::4.5::838983525\n"
                                    b"7::185::0.5::1049764426\n")
    (d / "movies.dat").write_bytes(
        "122::Boomerang (1992)::Comedy|Romance\n"
        "185::City of Lost Children, The (Cité des enfants perdus, La) (1995)::(no genres listed)\n"
        .encode())
    (d / "tags.dat").write_bytes(b"15::4973::excellent!::1215184630\n")
    return d


def make_20m(root: Path) -> Path:
    root.mkdir(exist_ok=True)
    (root / "ratings.csv").write_bytes(b"userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n"
                                       b"1,11,4.0,1112484676\n3,131262,0.5,1439474476\n")
    (root / "movies.csv").write_bytes(
        b'movieId,title,genres\n2,Jumanji (1995),Adventure|Children|Fantasy\n'
        b'11,"American President, The (1995)",Comedy|Drama|Romance\n'
        b'131262,"Innocence (""Unschuld"")",(no genres listed)\n'
        b'200000,Twin Peaks (1990\xe2\x80\x931991),Drama\n')
    (root / "links.csv").write_bytes(b"movieId,imdbId,tmdbId\n2,0113497,8844\n")
    return root


# ---- ml-100k (the real files) --------------------------------------------------------------------
def test_ml100k(ml100k_dir):
    data = load_movielens(ml100k_dir)
    assert (len(data), data.n_users, data.n_items) == (100_000, 943, 1_682)
    assert data.rating is not None and data.timestamp is not None
    assert data.meta["layout"] == "ml-100k" and data.source == str(ml100k_dir)
    assert item(data, 1) == {"id": 1, "title": "Toy Story", "year": 1995,
                             "genres": ["Animation", "Children's", "Comedy"]}
    assert item(data, 543)["title"] == "Misérables, Les"  # Latin-1 in u.item
    assert item(data, 267) == {"id": 267, "title": "unknown", "year": None, "genres": []}
    assert item(data, 1412)["year"] == 1995  # "(1995) (V)": the year comes from the release date
    assert user(data, 1) == {"id": 1, "age": 24, "gender": "M", "occupation": "technician",
                             "zip": "85711"}
    assert data.item_features.columns == ["id", "title", "year", "genres"]
    assert data.user_features.columns == ["id", "age", "gender", "occupation", "zip"]
    assert data.item_features["title"].null_count() == 0


def test_ml100k_needs_24_fields(tmp_path, ml100k_dir):
    for name in ("u.data", "u.user", "u.genre"):
        (tmp_path / name).symlink_to(ml100k_dir / name)
    (tmp_path / "u.item").write_bytes(b"1|Toy Story (1995)|01-Jan-1995||url|0|1\n")
    with pytest.raises(DataError, match=r"u\.item: 7 fields per line, expected 24"):
        load_movielens(tmp_path)


# ---- ml-1m ----------------------------------------------------------------------------------------
def test_ml1m(tmp_path):
    data = load_movielens(make_1m(tmp_path))  # the parent of ml-1m/: found one level down
    assert data.meta["layout"] == "ml-1m" and data.source == str(tmp_path / "ml-1m")
    assert data.to_frame().rows()[0] == (1, 1193, 5.0, 978300760)
    assert (len(data), data.n_users, data.n_items) == (4, 2, 3)
    assert item(data, 2858) == {"id": 2858, "title": "Misérables, Les", "year": 1998, "genres": ["Drama"]}
    assert item(data, 661)["genres"] == ["Animation", "Children's", "Musical"]
    assert user(data, 1) == {"id": 1, "age": 1, "gender": "F", "occupation": "K-12 student", "zip": "48067"}
    assert user(data, 2)["occupation"] == "self-employed" == ML1M_OCCUPATIONS[16]
    assert len(ML1M_OCCUPATIONS) == 21 and ML1M_OCCUPATIONS[20] == "writer"


def test_ml1m_titles_with_colons(tmp_path):
    root = make_1m(tmp_path) / "ml-1m"
    (root / "ratings.dat").write_bytes(b"1::3000::5::978300760\n")
    assert item(load_movielens(root), 3000)["title"] == "Star Wars: Episode IV - A New Hope"


def test_ml1m_bad_rating_line(tmp_path):
    root = make_1m(tmp_path) / "ml-1m"
    (root / "ratings.dat").write_bytes(b"1::1193::5::978300760\n1::661::five::978302109\n")
    with pytest.raises(DataError) as info:
        load_movielens(root)
    assert str(info.value) == "ratings.dat, line 2, column 'rating': not a number: 'five'"


def test_ml1m_rating_outside_1_to_5(tmp_path):
    root = make_1m(tmp_path) / "ml-1m"
    (root / "ratings.dat").write_bytes(b"1::1193::5::978300760\n1::661::6::978302109\n")
    with pytest.raises(DataError, match=r"ratings\.dat, line 2, column 'rating': rating 6 is outside"):
        load_movielens(root)


def test_ml1m_unknown_occupation_code(tmp_path):
    root = make_1m(tmp_path) / "ml-1m"
    (root / "users.dat").write_bytes(b"1::F::1::10::48067\n2::M::56::99::70072\n")
    with pytest.raises(DataError, match=r"users\.dat: cannot be parsed"):
        load_movielens(root)


def test_ml1m_extra_field_names_the_line(tmp_path):
    root = make_1m(tmp_path) / "ml-1m"
    (root / "movies.dat").write_bytes(b"1193::Cuckoo (1975)::Drama\n\n661::Peach (1996)::Drama::x\n")
    with pytest.raises(DataError) as info:
        load_movielens(root)
    assert (Path(info.value.path).name, info.value.line) == ("movies.dat", 3)


# ---- ml-10m -------------------------------------------------------------------------------------
def test_ml10m(tmp_path):
    root = make_10m(tmp_path)
    assert detect_layout(root) == "ml-10m"
    data = load_movielens(tmp_path)
    assert data.user_features is None
    assert data.to_frame().rows() == [(1, 122, 5.0, 838985046), (1, 185, 4.5, 838983525),
                                      (7, 185, 0.5, 1049764426)]
    assert item(data, 185) == {"id": 185, "year": 1995, "genres": [],
                               "title": "City of Lost Children, The (Cité des enfants perdus, La)"}
    assert item(data, 122)["genres"] == ["Comedy", "Romance"]


# ---- ml-20m and later ------------------------------------------------------------------------------
def test_ml20m(tmp_path):
    root = make_20m(tmp_path / "ml-20m")
    data = load_movielens(root, layout="ml-20m")
    assert data.meta["layout"] == "csv" and data.user_features is None
    assert data.to_frame().rows()[2] == (3, 131262, 0.5, 1439474476)
    assert item(data, 11) == {"id": 11, "title": "American President, The", "year": 1995,
                              "genres": ["Comedy", "Drama", "Romance"]}
    assert item(data, 131262) == {"id": 131262, "title": 'Innocence ("Unschuld")', "year": None,
                                  "genres": []}


def test_detected_csv_layout_and_year_ranges(tmp_path):
    root = make_20m(tmp_path / "ml-latest")
    (root / "ratings.csv").write_bytes(b"userId,movieId,rating,timestamp\n1,200000,4.0,1\n")
    assert detect_layout(root) == "csv"
    assert item(load_movielens(root), 200000) == {"id": 200000, "title": "Twin Peaks", "year": 1990,
                                                  "genres": ["Drama"]}


# ---- what is not MovieLens ------------------------------------------------------------------------
def test_not_a_movielens_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match=r"not a MovieLens directory.*notes\.txt"):
        load_movielens(tmp_path)
    with pytest.raises(ValueError, match="unknown MovieLens layout"):
        load_movielens(make_20m(tmp_path / "x"), layout="ml-5m")
    with pytest.raises(DataError, match="missing: no such directory") as info:
        load_movielens(tmp_path / "missing")
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(DataError, match="is a file, not a MovieLens directory"):
        load_movielens(tmp_path / "notes.txt")


def test_directory_names_are_not_glob_patterns(tmp_path):
    make_20m(tmp_path / "ml1")
    (tmp_path / "ml1" / "movies.csv").write_bytes(b"movieId,title,genres\n9,Other (2000),Drama\n")
    root = make_20m(tmp_path / "ml[1]")
    data = load_movielens(root)
    assert len(data) == 3 and item(data, 2)["title"] == "Jumanji"  # not ml1's movies.csv


def test_an_unreadable_side_file_is_a_data_error(tmp_path):
    root = make_20m(tmp_path / "ml-25m")
    (root / "movies.csv").unlink()
    (root / "movies.csv").mkdir()
    with pytest.raises(DataError, match=r"movies\.csv"):
        load_movielens(root)


def test_layout_must_match_the_files(tmp_path, ml100k_dir):
    with pytest.raises(DataError, match="holds the ml-100k layout, not that of ml-1m"):
        load_movielens(ml100k_dir, layout="ml-1m")
    assert len(load_movielens(make_1m(tmp_path), layout="ml-1m")) == 4


def test_missing_movies_file(tmp_path):
    root = make_20m(tmp_path / "ml-25m")
    (root / "movies.csv").unlink()
    with pytest.raises(DataError, match=r"movies\.csv: missing from the MovieLens directory"):
        load_movielens(root)
