"""Open the generated report from disk (file://) in Debian's headless Chromium via Playwright:
no console errors, every image decoded, every audio source an existing file that loads."""

from __future__ import annotations

import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from robustmer.report.html import build_report
from test_report import make_store  # the same small results store as the HTML-content tests

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.browser


def _benign_abort(request: object) -> bool:
    """Chromium aborts a media request once it has what it needs (e.g. the metadata after
    ``load()``); that is not a broken link. The players' durations are checked separately."""
    failure = getattr(request, "failure", None) or ""
    return getattr(request, "resource_type", "") == "media" and "ERR_ABORTED" in failure


def _file_url_to_path(url: str) -> Path:
    assert url.startswith("file://"), url
    return Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))


def test_report_opens_cleanly_in_chromium(tmp_path: Path) -> None:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} not found: the browser test needs Debian's chromium "
                    "(apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    main = make_store(tmp_path / "ours")
    other = make_store(tmp_path / "published", types=("A2E", "A2M2E"), seed=1)
    out = build_report(main.path, compare=[other.path])
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}")
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: None if _benign_abort(r) else errors.append(
                f"request failed: {r.url} ({r.failure})"))
            page.goto(out.resolve().as_uri(), wait_until="load")
            assert page.title().startswith("robustmer report")
            assert page.locator("#side-by-side").count() == 1
            images = page.evaluate(
                "Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
            assert len(images) >= 4
            for alt, complete, width in images:
                assert complete and width > 0, f"image {alt!r} did not decode"
            sources = page.evaluate("Array.from(document.querySelectorAll('audio'))"
                                    ".map(a => a.src)")
            assert len(sources) == 8  # 2 clips x (clean, adversarial) x 2 stores
            for src in sources:
                assert _file_url_to_path(src).is_file(), src
            # the players really load their files: metadata (duration) becomes available
            durations = page.evaluate("""async () => Promise.all(
                Array.from(document.querySelectorAll('audio')).map(a => new Promise(res => {
                    a.addEventListener('loadedmetadata', () => res(a.duration), {once: true});
                    a.addEventListener('error', () => res(-1), {once: true});
                    a.preload = 'auto'; a.load();
                    setTimeout(() => res(-2), 10000);
                })))""")
            assert all(d > 0 for d in durations), durations
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert not errors, errors
