"""Open the generated report from disk (file://) in Debian's headless Chromium via Playwright:
no console errors, every image decoded and described (alt), every audio source an existing file
that loads its metadata by itself, every table stating its N, no correlation's interval outside
[-1, 1], and Figure 4's output picker switching figures."""

from __future__ import annotations

import re
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from robustmer.report.html import build_report
from test_report import make_store, make_study_store  # the stores of the HTML-content tests

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


def test_study_report_is_trustworthy_in_chromium(tmp_path: Path) -> None:
    """The page of a study store (3 types incl. an adversarially trained one, 2 seeds, two
    budgets and the reference preset with δ = 0 clips, real WAV media), as a reader's browser
    shows it."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} not found: the browser test needs Debian's chromium "
                    "(apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    store = make_study_store(tmp_path / "study")
    out = build_report(store.path, n_boot=200)
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
            # no interval of a correlation outside [-1, 1] (machine-readable spans)
            rs = page.evaluate("""Array.from(document.querySelectorAll(
                'span.ci[data-quantity="r"][data-low]')).map(s => [+s.dataset.low,
                +s.dataset.estimate, +s.dataset.high])""")
            assert len(rs) >= 9
            for lo, est, hi in rs:
                assert -1.0 <= lo <= hi <= 1.0 and -1.0 <= est <= 1.0, (lo, est, hi)
            # every figure has alt text and decodes
            images = page.evaluate(
                "Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
            assert len(images) >= 1 + 3 * 3  # curves, and per setting Figure 3 + 2 Figure 4s
            for alt, complete, width in images:
                assert alt.strip(), "an <img> without alt text"
                assert complete and width > 0, f"image {alt!r} did not decode"
            # every table states N (in its caption)
            captions = page.evaluate("""Array.from(document.querySelectorAll('table')).map(
                t => t.caption ? t.caption.textContent : '')""")
            assert len(captions) >= 10
            for text in captions:
                assert re.search(r"\bN\b", text), f"a table without N: {text!r}"
            # the players load their metadata by themselves (preload="metadata"): duration > 0
            page.wait_for_function("""Array.from(document.querySelectorAll('audio')).every(
                a => a.readyState >= 1 || a.error)""", timeout=15000)
            durations = page.evaluate(
                "Array.from(document.querySelectorAll('audio')).map(a => a.duration)")
            assert len(durations) == 4 and all(d > 0.9 for d in durations), durations
            # Figure 4: one output shown at a time, the select switches it
            select = page.locator("select[data-pick]").first
            target = select.get_attribute("data-pick")
            shown = f"#{target} > figure[data-output]:not([hidden])"
            assert page.locator(shown).count() == 1
            other = next(o for o in page.evaluate(
                "s => Array.from(s.options).map(o => o.value)", select.element_handle())
                if o != select.input_value())
            select.select_option(other)
            assert page.locator(shown).count() == 1
            assert page.locator(shown).get_attribute("data-output") == other
            # the δ = 0 clips are counted where a reader sees the SNR table
            text = page.inner_text("body")
            assert "18 of 48 clips have δ = 0" in text
        finally:
            browser.close()
    assert not errors, errors
