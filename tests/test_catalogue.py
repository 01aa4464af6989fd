"""Item catalogues: read from a file, attached at fit time or later, stored with the model, shown everywhere.

Reading and attaching are tested on small files; the CLI runs in-process (`recotorch.cli.main`);
the bar (`recommend --user 196 --k 5` names the items) runs on the real ml-100k with its u.item;
the web page of a 0/1 model fitted by the CLI with `--items` is checked in real Chromium.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recotorch.data.catalogue import attach, item_names, natural_title, read_catalogue
from recotorch.data.vocab import Vocab
from recotorch.errors import InputFileError, OptionError
from tests.helpers.cli import cli_fixture

CHROMIUM = Path("/usr/bin/chromium")
REQUIRED = os.environ.get("RECOTORCH_REQUIRE_BROWSER") == "1"
AISLES = ("Bakery", "Dairy", "Frozen", "Pantry", "Produce")


@pytest.fixture()
def cli(capsys, monkeypatch):
    """`cli(*args)` runs `recotorch ARGS` in this process: (exit code, stdout, stderr)."""
    yield from cli_fixture(capsys, monkeypatch)


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def shop(root: Path, n_users: int = 90, n_items: int = 40, seed: int = 0) -> tuple[Path, Path]:
    """A purchase log (string ids; customers shop mostly in one aisle) and its catalogue CSV."""
    rng = np.random.default_rng(seed)
    aisle_of = np.arange(n_items) % len(AISLES)
    rows = []
    for u in range(n_users):
        weights = np.where(aisle_of == rng.integers(len(AISLES)), 20.0, 1.0) * (2.0 - np.arange(n_items) / n_items)
        picked = rng.choice(n_items, 7, replace=False, p=weights / weights.sum())
        rows += [(f"c{u:03d}", f"sku-{i:03d}") for i in picked]
    log = root / "purchases.csv"
    pl.DataFrame(rows, schema={"customer": pl.Utf8, "sku": pl.Utf8}, orient="row").write_csv(log)
    catalogue = root / "products.csv"
    pl.DataFrame({"sku": [f"sku-{i:03d}" for i in range(n_items)] + ["sku-999"],
                  "product": [f"Basket {i}, The" if i % 10 == 0 else f"{AISLES[aisle_of[i]]} item {i}"
                              for i in range(n_items)] + ["Discontinued"],
                  "aisle": [AISLES[a] for a in aisle_of] + ["Pantry"],
                  "tags": ["organic|local" if i % 3 == 0 else "" for i in range(n_items)] + [""],
                  "price": [1.5 + i for i in range(n_items)] + [9.0]}).write_csv(catalogue)
    return log, catalogue


# ---- reading -----------------------------------------------------------------------------------
def test_read_defaults_lists_and_numbers(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text('id,name,genre,price\n1,"Godfather, The",Crime|Drama,3.5\n2,Heat,Crime,2\n3,,,1\n')
    cat = read_catalogue(path)
    assert (cat.id_column, cat.name_column, cat.categories, cat.unused) == ("id", "name", ("genre",), ("price",))
    assert cat.frame["id"].dtype == pl.Int64 and cat.frame["title"].to_list() == ["Godfather, The", "Heat", None]
    assert cat.frame["genre"].to_list() == [["Crime", "Drama"], ["Crime"], []]
    named = read_catalogue(path, id_col="id", name_col="name", category_cols=["price"])
    assert named.categories == ("price",) and named.frame["price"].to_list() == [["3.5"], ["2"], ["1"]]


def test_read_refusals_name_the_flag_or_line(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("sku,label\na,x\nb,y\n")
    with pytest.raises(OptionError, match="--items-id-col"):
        read_catalogue(path)
    assert read_catalogue(path, item_col="sku").id_column == "sku"  # the interactions' item column name
    with pytest.raises(OptionError, match=r"did you mean 'sku'"):
        read_catalogue(path, id_col="skus")
    with pytest.raises(OptionError, match="--items-name-col"):
        read_catalogue(path, id_col="sku", name_col="title")
    with pytest.raises(OptionError, match="--items-category-col"):
        read_catalogue(path, id_col="sku", category_cols=["label", "label"])
    path.write_text("id,name\na,x\nb,y\na,z\n")
    with pytest.raises(InputFileError, match=r"'a' appears more than once \(data rows 1 and 3\)"):
        read_catalogue(path)
    path.write_text("id,name\na,x\n,y\n")
    with pytest.raises(InputFileError, match="line 3"):
        read_catalogue(path)


def test_movielens_u_item_in_its_own_layout(ml100k_dir):
    cat = read_catalogue(ml100k_dir / "u.item")
    assert cat.frame.height == 1682 and cat.categories == ("genres",)
    names = item_names(cat.frame)
    godfather = cat.frame["id"].to_list().index(127)
    assert names[godfather] == "The Godfather (1972)"
    with pytest.raises(OptionError, match=r"u\.item"):
        read_catalogue(ml100k_dir / "u.item", name_col="title")


def test_attach_aligns_counts_and_replaces(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text('id,name,aisle\n10,"Loaf, A",Bakery\n20,Milk,Dairy\n99,Ghost,Dairy\n')
    vocab = Vocab(pl.Series([20, 10, 30]))
    result = attach(None, read_catalogue(path), vocab)
    assert (result.matched, result.missing, result.extra, result.extra_examples) == (2, 1, 1, [99])
    assert result.features["id"].to_list() == [20, 10, 30]
    assert result.features["title"].to_list() == ["Milk", "Loaf, A", None]
    assert item_names(result.features).to_list() == ["Milk", "A Loaf", None]
    old = pl.DataFrame({"id": [10, 20, 30], "title": ["t10", "t20", "t30"], "year": [1990, 1991, None],
                        "genres": [["x"], [], ["y"]]})
    merged = attach(old, read_catalogue(path), vocab)
    assert merged.replaced == ("title", "year") and merged.features.columns == ["id", "genres", "title", "aisle"]
    assert merged.features["genres"].to_list() == [[], ["x"], ["y"]]
    notes = merged.notes(read_catalogue(path))
    assert any("2 of 3 model items" in n for n in notes) and any("[99]" in n for n in notes)


def test_natural_title_is_shared_with_the_server():
    from recotorch.serve import catalog

    assert catalog.natural_title is natural_title
    assert natural_title("Blue Angel, The (Blaue Engel, Der)") == "The Blue Angel (Der Blaue Engel)"


# ---- the CLI ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def u_data_csv(ml100k_dir, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ml") / "ratings.csv"
    pl.read_csv(ml100k_dir / "u.data", separator="\t", has_header=False,
                new_columns=["user", "item", "rating", "timestamp"]).write_csv(path)
    return path


@pytest.mark.slow
def test_bar_recommend_one_user_names_the_items(cli, u_data_csv, ml100k_dir, tmp_path):
    code, out, err = cli("fit", u_data_csv, "--model", "ease", "--items", ml100k_dir / "u.item",
                         "--out", tmp_path / "ease", cwd=tmp_path)
    assert code == 0, err
    assert "1,682 of 1,682 model items" in err
    code, out, err = cli("recommend", tmp_path / "ease", "--user", "196", "--k", "5", cwd=tmp_path)
    assert code == 0, err
    assert "Top 5 for user 196" in out and "name" in out
    assert sum(1 for line in out.splitlines()[1:] if re.search(r"\b196\b", line)) == 5, out
    assert "(19" in out  # names carry their year: "Back to the Future (1985)"
    code, out, err = cli("similar", tmp_path / "ease", "127", "--k", "3", cwd=tmp_path)
    assert code == 0 and "The Godfather (1972)" in out and "Godfather, The" not in out


def test_items_attached_later_and_shown(cli, tmp_path):
    from recotorch.artifacts import load, resolve_version
    from recotorch.serve.recommender import Recommender

    log, products = shop(tmp_path)
    model = tmp_path / "model"
    code, _, err = cli("fit", log, "--user-col", "customer", "--item-col", "sku", "--model", "ease",
                       "--out", model, cwd=tmp_path)
    assert code == 0, err
    code, out, _ = cli("items", model, cwd=tmp_path)
    assert code == 0 and "no item catalogue" in out
    code, before, _ = cli("recommend", model, "--k", "5", "--out", "-", cwd=tmp_path)
    assert before.splitlines()[0] == "user,item,rank,score"
    version = resolve_version(model)
    # refused before anything changes: a wrong column, flags without a file
    snapshot = tree(tmp_path)
    for args, flag in [((products, "--items-id-col", "SKU"), "--items-id-col"),
                       ((log, "--items-name-col", "title"), "--items-name-col"),
                       (("--items-name-col", "product"), "--items-name-col")]:
        code, _, err = cli("items", model, *args, cwd=tmp_path)
        assert code == 2 and flag in err and "Traceback" not in err, err
    assert tree(tmp_path) == snapshot
    code, out, err = cli("items", model, products, "--items-name-col", "product", cwd=tmp_path)  # ids: sku, as fitted
    assert code == 0, err
    assert "40 of 40 model items" in err and "sku-999" in err and "'price'" in err  # counted, said
    assert resolve_version(model) != version
    fitted = load(model)
    assert fitted.item_features_.columns == ["id", "title", "aisle", "tags"]
    code, after, _ = cli("recommend", model, "--k", "5", "--out", "-", cwd=tmp_path)
    with_names = pl.read_csv(after.encode())
    assert with_names.columns == ["user", "item", "rank", "score", "name"]
    assert with_names.drop("name").equals(pl.read_csv(before.encode()))  # the model itself is unchanged
    named = dict(zip(with_names["item"], with_names["name"], strict=True))
    assert named.get("sku-010", "The Basket 10") == "The Basket 10"
    assert all(not n.endswith(", The") for n in named.values())
    code, out, _ = cli("items", model, "--top", "3", cwd=tmp_path)
    assert code == 0 and "40 with a name" in out and "aisle" in out
    catalog = Recommender.load(model).catalog  # what `serve` shows
    assert catalog.category_column == "aisle" and catalog.genre_names == sorted(AISLES)
    assert set(catalog.categories["tags"]) == {"local", "organic"}
    assert catalog.describe(fitted.items_.index(["sku-010"])[0])["name"] == "The Basket 10"


# ---- the web page --------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists() and not REQUIRED, reason="no /usr/bin/chromium (scripts/install_browser.sh)")
def test_page_of_a_01_model_with_a_cli_catalogue(cli, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from tests.helpers.server import ServerProcess

    log, products = shop(tmp_path)
    model = tmp_path / "model"
    code, _, err = cli("fit", log, "--user-col", "customer", "--item-col", "sku", "--model", "ease",
                       "--items", products, "--items-name-col", "product", "--items-category-col", "aisle",
                       "--out", model, cwd=tmp_path)
    assert code == 0, err
    errors: list[str] = []
    with ServerProcess(model, "--store", "none") as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server.url + "/")
            expect(page.locator("#model-info")).to_contain_text("40 items")
            popular = page.locator('#recs[data-kind="popular"] li')
            expect(popular).to_have_count(10)  # a list before any interaction
            expect(page.locator("#results li").first).to_be_visible()
            assert page.locator(".star, .stars, .rating-input").count() == 0  # 0/1 data: no stars
            assert "★" not in page.locator("body").inner_text()
            assert page.locator("#results li").first.locator("button.like").count() == 1
            assert page.locator("#genre option").all_inner_texts() == ["All aisles", *sorted(AISLES)]
            titles = page.locator("#results li .title").all_inner_texts()
            assert "The Basket 0" in titles and not any(t.endswith(", The") for t in titles)
            shot = tmp_path / "page-01-catalogue.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert not errors, errors
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24])[0] >= 800
    if os.environ.get("RECOTORCH_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["RECOTORCH_SCREENSHOT_DIR"]) / shot.name)
