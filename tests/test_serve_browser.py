"""The web page end to end: a real server process, headless Chromium driven by Playwright.

A rating model (MF on the real ml-100k) shows stars on its scale; a 0/1 model (EASE on a small
purchase log with a product catalogue) shows like buttons and no stars, and a popular list
before any interaction. Screenshots of both go to the test's tmp dir (and, when
RECOTORCH_SCREENSHOT_DIR is set, a copy there). Skipped only when /usr/bin/chromium is absent
(scripts/install_browser.sh installs it and Playwright).
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# CI sets RECOTORCH_REQUIRE_BROWSER=1: there a missing browser is a failure, not a skip.
REQUIRED = os.environ.get("RECOTORCH_REQUIRE_BROWSER") == "1"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists() and not REQUIRED,
                                 reason="no /usr/bin/chromium (scripts/install_browser.sh)")]

AISLES = ("Bakery", "Dairy", "Produce", "Pantry", "Frozen")


@pytest.fixture(scope="module")
def ml100k_model(ml100k_dir, tmp_path_factory):
    from recotorch.data.movielens import load_movielens
    from recotorch.models import MatrixFactorization

    path = tmp_path_factory.mktemp("browser") / "model-mf"
    MatrixFactorization(seed=0).fit(load_movielens(ml100k_dir)).save(path)
    return path


def purchase_log(n_users: int = 120, n_items: int = 60, per_user: int = 8, seed: int = 0):
    """0/1 purchases with string ids and a catalogue: `name` (some "X, The") and an `aisle` column.

    Each customer shops mostly in one aisle, so liking items of an aisle moves the list there.
    """
    import polars as pl

    from recotorch.data.interactions import Interactions

    rng = np.random.default_rng(seed)
    aisle_of = np.arange(n_items) % len(AISLES)
    rows = []
    for u in range(n_users):
        home = rng.integers(len(AISLES))
        weights = np.where(aisle_of == home, 20.0, 1.0) * (1.0 + np.arange(n_items)[::-1] / n_items)
        for i in rng.choice(n_items, per_user, replace=False, p=weights / weights.sum()).tolist():
            rows.append((f"c{u:04d}", f"sku-{i:03d}"))
    frame = pl.DataFrame(rows, schema={"user": pl.Utf8, "item": pl.Utf8}, orient="row")
    names = [f"Basket {i}, The" if i % 10 == 0 else f"{AISLES[aisle_of[i]]} product {i}" for i in range(n_items)]
    catalogue = pl.DataFrame({"id": [f"sku-{i:03d}" for i in range(n_items)], "name": names,
                              "aisle": [AISLES[a] for a in aisle_of]})
    return Interactions.from_frame(frame, rating=None, timestamp=None).with_features(item_features=catalogue)


@pytest.fixture(scope="module")
def ranking_model(tmp_path_factory):
    from recotorch.models.ease import EASE

    path = tmp_path_factory.mktemp("browser") / "model-ease"
    EASE().fit(purchase_log()).save(path)
    return path


def keep_screenshot(page, tmp_path: Path, name: str) -> Path:
    """A full-page PNG in the test's tmp dir (checked: a real PNG of a real size), copied out if asked."""
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, (shot, len(data))
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 800 and height >= 400, (width, height)
    if os.environ.get("RECOTORCH_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["RECOTORCH_SCREENSHOT_DIR"]) / name)
    return shot


def launch(p):
    browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
    return browser, browser.new_page(viewport={"width": 1280, "height": 900})


def test_rate_three_movies_and_get_recommendations(ml100k_model, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from recotorch.serve.store import read_feedback
    from tests.helpers.server import ServerProcess

    store = f"sqlite:///{tmp_path / 'feedback.db'}"
    errors: list[str] = []
    with ServerProcess(ml100k_model, "--store", store) as server, sync_playwright() as p:
        browser, page = launch(p)
        try:
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server.url + "/")
            expect(page.locator("#model-info")).to_contain_text("1682 items")
            expect(page.locator("#results li").first).to_be_visible()
            # before any rating: the popular list, not an empty column; stars on the 1-5 scale
            expect(page.locator('#recs[data-kind="popular"] li')).to_have_count(10)
            expect(page.locator("#recs-title")).to_have_text("Popular")
            expect(page.locator("#results li").first.locator("button.star")).to_have_count(5)
            assert page.locator("button.like").count() == 0
            expect(page.locator("#genre")).to_be_visible()
            expect(page.locator("#genre option", has_text="Film-Noir")).to_have_count(1)
            expect(page.locator("#given-empty")).to_contain_text("1–5 stars")
            # names in reading order, found by either form
            page.fill("#search", "Godfather, The")
            expect(page.locator('#results[data-query="Godfather, The"]')).to_have_count(1)
            expect(page.locator("#results li").first.locator(".title")).to_have_text("The Godfather (1972)")
            for title in ("Star Wars (1977)", "Fargo (1996)", "Toy Story (1995)"):
                query = title.split(" (")[0]
                page.fill("#search", query)
                expect(page.locator(f'#results[data-query="{query}"]')).to_have_count(1)  # the search has landed
                row = page.locator("#results li", has_text=title).first
                expect(row).to_be_visible()
                row.locator('button.star[data-rating="5"]').click()
            expect(page.locator("#given li")).to_have_count(3)
            recs = page.locator('#recs[data-kind="recommended"] li')
            expect(recs).to_have_count(10, timeout=20_000)
            expect(page.locator("#recs-title")).to_have_text("Recommended for you")
            expect(recs.first.locator(".because")).to_contain_text("because you liked")
            texts = recs.all_inner_texts()
            assert not any(t.startswith(("Star Wars (1977)", "Fargo (1996)", "Toy Story (1995)")) for t in texts)
            keep_screenshot(page, tmp_path, "page-rating-mf.png")
            recs.first.locator("button.link", has_text="similar").click()
            expect(page.locator("#similar-panel")).to_be_visible()
            expect(page.locator("#similar li")).to_have_count(10)
        finally:
            browser.close()
    assert not errors, errors
    feedback = read_feedback(store)
    assert feedback.height == 3 and set(feedback["item"].to_list()) == {50, 100, 1}
    assert feedback["user"].str.starts_with("web-").all()


def test_a_01_model_shows_like_buttons_and_a_popular_list(ranking_model, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from recotorch.serve.store import read_feedback
    from tests.helpers.server import ServerProcess

    store = f"sqlite:///{tmp_path / 'feedback.db'}"
    errors: list[str] = []
    with ServerProcess(ranking_model, "--store", store) as server, sync_playwright() as p:
        browser, page = launch(p)
        try:
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server.url + "/")
            expect(page.locator("#model-info")).to_contain_text("60 items")
            popular = page.locator('#recs[data-kind="popular"] li')
            expect(popular).to_have_count(10)  # before any interaction the column is not empty
            expect(page.locator("#recs-title")).to_have_text("Popular")
            expect(page.locator("#results li").first).to_be_visible()
            # no star widget anywhere, and no star glyph or "rating" wording in the page
            assert page.locator(".star, .stars, .rating-input").count() == 0
            body = page.locator("body").inner_text()
            assert "★" not in body and "rating" not in body.lower(), body[:500]
            assert page.locator("#results li").first.locator("button.like").count() == 1
            expect(page.locator("#given-empty")).to_contain_text("Like a few items")
            # the category filter is built from the catalogue's `aisle` column; names in reading order
            expect(page.locator("#genre")).to_be_visible()
            assert page.locator("#genre option").all_inner_texts() == ["All aisles", *sorted(AISLES)]
            keep_screenshot(page, tmp_path, "page-ranking-ease-before.png")
            page.fill("#search", "basket 10, the")  # the stored form finds it, the reading order is shown
            expect(page.locator('#results[data-query="basket 10, the"] li .title')).to_have_text(["The Basket 10"])
            page.fill("#search", "")
            expect(page.locator('#results[data-query=""] li')).to_have_count(20)

            before = popular.all_inner_texts()
            page.select_option("#genre", "Dairy")
            expect(page.locator("#results li").first.locator(".genres")).to_have_text("Dairy")
            liked = []
            for row in page.locator("#results li").all()[:3]:
                liked.append(row.get_attribute("data-item"))
                row.locator("button.like").click()
            expect(page.locator("#given li")).to_have_count(3)
            page.select_option("#genre", "")
            recs = page.locator('#recs[data-kind="recommended"] li')
            expect(recs).to_have_count(10, timeout=20_000)
            expect(page.locator("#recs-title")).to_have_text("Recommended for you")
            shown = [li.get_attribute("data-item") for li in recs.all()]
            assert not set(shown) & set(liked)
            assert recs.all_inner_texts() != before  # liking changed the list
            dairy = [sum("Dairy" in t for t in texts) for texts in (before, recs.all_inner_texts())]
            assert dairy[1] >= max(5, dairy[0] + 3), (dairy, recs.all_inner_texts())  # towards what was liked
            expect(page.locator(f'#results li[data-item="{liked[0]}"] button.like')).to_have_attribute(
                "aria-pressed", "true")
            assert page.locator(".star, .stars").count() == 0
            keep_screenshot(page, tmp_path, "page-ranking-ease-after.png")

            page.locator("#given li").first.locator("button.link", has_text="remove").click()
            expect(page.locator("#given li")).to_have_count(2)
        finally:
            browser.close()
    assert not errors, errors
    feedback = read_feedback(store)
    assert feedback.height == 3 and set(feedback["item"].to_list()) == set(liked)
    assert set(feedback["rating"].to_list()) == {1.0}


def test_stars_follow_a_ten_point_scale(tmp_path):
    from dataclasses import replace

    import torch
    from playwright.sync_api import expect, sync_playwright

    from recotorch.models import MatrixFactorization
    from tests.helpers.server import ServerProcess
    from tests.helpers.synthetic import toy_catalogue

    data = toy_catalogue()
    ten = torch.where(data.rating == 1, 1.0, data.rating * 2)  # 1, 4, 6, 8, 10
    MatrixFactorization(dim=4, epochs=3, seed=0).fit(replace(data, rating=ten)).save(tmp_path / "mf10")
    errors: list[str] = []
    with ServerProcess(tmp_path / "mf10", "--store", "none") as server, sync_playwright() as p:
        browser, page = launch(p)
        try:
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server.url + "/")
            first = page.locator("#results li").first
            expect(first.locator("button.star")).to_have_count(10)
            expect(page.locator("#given-empty")).to_contain_text("1–10 stars")
            first.locator('button.star[data-rating="9"]').click()
            expect(page.locator("#given li")).to_contain_text("★" * 9)
            expect(page.locator('#recs[data-kind="recommended"] li')).to_have_count(10, timeout=20_000)
        finally:
            browser.close()
    assert not errors, errors
