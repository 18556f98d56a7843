"""Real browser: the Dataset page audits a shared dataset (charts and thumbnails drawn)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import shared_dataset

pytestmark = pytest.mark.browser


def test_dataset_page_shows_charts_and_thumbnails(page, live_app, artifacts_dir: Path) -> None:
    shared_dataset("five_celebrity_faces")
    url, _ = live_app
    page.goto(f"{url}/dataset")
    page.get_by_role("heading", name="Dataset").first.wait_for(timeout=60_000)
    page.get_by_test_id("stSelectbox").first.click()
    page.get_by_role("option", name="five_celebrity_faces", exact=False).first.click()
    page.get_by_text("77", exact=True).first.wait_for(timeout=30_000)
    page.locator("[data-testid=stPlotlyChart] .main-svg").first.wait_for(timeout=30_000)
    page.locator("[data-testid=stImage] img, [data-testid=stImageContainer] img").first.wait_for(timeout=30_000)
    assert page.locator("[data-testid=stPlotlyChart]").count() >= 2
    assert page.get_by_text("madonna").count() >= 1
    assert "Traceback" not in page.content()
    sidebar = page.get_by_test_id("stSidebarNav")
    assert sidebar.get_by_role("link", name="Verify").count() == 1
    assert sidebar.get_by_text("common").count() == 0
    page.screenshot(path=str(artifacts_dir / "dataset_audit.png"), full_page=True)
    assert page.foreign_requests == []
