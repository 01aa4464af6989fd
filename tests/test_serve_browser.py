"""The web page end to end: a real server process, headless Chromium driven by Playwright, the real ml-100k.

Skipped only when /usr/bin/chromium is absent (scripts/install_browser.sh installs it and Playwright).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# CI sets RECOTORCH_REQUIRE_BROWSER=1: there a missing browser is a failure, not a skip.
REQUIRED = os.environ.get("RECOTORCH_REQUIRE_BROWSER") == "1"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists() and not REQUIRED,
                                 reason="no /usr/bin/chromium (scripts/install_browser.sh)")]


@pytest.fixture(scope="module")
def ml100k_model(ml100k_dir, tmp_path_factory):
    from recotorch.data.movielens import load_movielens
    from recotorch.models import MatrixFactorization

    path = tmp_path_factory.mktemp("browser") / "model-mf"
    MatrixFactorization(seed=0).fit(load_movielens(ml100k_dir)).save(path)
    return path


def test_rate_three_movies_and_get_recommendations(ml100k_model, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from recotorch.serve.store import read_feedback
    from tests.helpers.server import ServerProcess

    store = f"sqlite:///{tmp_path / 'feedback.db'}"
    errors: list[str] = []
    with ServerProcess(ml100k_model, "--store", store) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server.url + "/")
            expect(page.locator("#model-info")).to_contain_text("1682 items")
            expect(page.locator("#results li").first).to_be_visible()
            for title in ("Star Wars (1977)", "Fargo (1996)", "Toy Story (1995)"):
                query = title.split(" (")[0]
                page.fill("#search", query)
                expect(page.locator(f'#results[data-query="{query}"]')).to_have_count(1)  # the search has landed
                row = page.locator("#results li", has_text=title).first
                expect(row).to_be_visible()
                row.locator('button.star[data-rating="5"]').click()
            expect(page.locator("#ratings li")).to_have_count(3)
            recs = page.locator("#recs li")
            expect(recs).to_have_count(10, timeout=20_000)
            expect(recs.first.locator(".because")).to_contain_text("because you liked")
            texts = recs.all_inner_texts()
            assert not any(t.startswith(("Star Wars (1977)", "Fargo (1996)", "Toy Story (1995)")) for t in texts)
            recs.first.locator("button.link", has_text="similar").click()
            expect(page.locator("#similar-panel")).to_be_visible()
            expect(page.locator("#similar li")).to_have_count(10)
        finally:
            browser.close()
    assert not errors, errors
    feedback = read_feedback(store)
    assert feedback.height == 3 and set(feedback["item"].to_list()) == {50, 100, 1}
    assert feedback["user"].str.starts_with("web-").all()
