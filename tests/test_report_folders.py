"""`robustmer report` on every folder kind a command leaves (issue 22): an explanation, an L2I
folder, an attack folder inside a study-like run, an explainer evaluation, and the run folder
holding them all (an index page). Each page is titled for what it is, its figures carry alt
text, its tables state N, and in a browser it opens without errors with players that load."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from robustmer.cli import app
from robustmer.report.folders import folder_kind


def invoke(*args: object) -> str:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, (args, res.output, res.exception)
    return res.output


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny A2E run folder holding one result of every kind."""
    root = tmp_path_factory.mktemp("folders")
    invoke("data", "synth", "--out", root / "data", "--clips", 10, "--seed", 3)
    run = root / "run"
    invoke("train", "--model", "a2e", "--data", root / "data", "--seed", 0, "--out", run,
           "--width", 0.0625, "--epochs", 1, "--cache", root / "cache", "--no-progress")
    clip = json.loads((run / "split.json").read_text())["test"][0]
    invoke("explain", run, "--clip", clip, "--method", "saliency", "--segments", "2x3",
           "--target", "tension")
    invoke("attack", run, "--split", "val", "--eps", 0.05, "--eta", 0.01, "--iters", 3,
           "--out", run / "attack" / "bim", "--no-progress")
    invoke("explainer-eval", run, "--methods", "saliency", "--k", "1-2", "--recovery-k", "1",
           "--split", "train", "--max-clips", 2, "--attack-iters", 20, "--eps", 0.5,
           "--eta", 0.05, "--grid", "2x3", "--out", run / "xeval", "--no-progress")
    invoke("l2i", "fit", run, "--components", 4, "--frames-per-clip", 4, "--nmf-iterations", 5,
           "--epochs", 1, "--pooling", "att", "--max-clips", 3)
    invoke("l2i", "explain", run, "--clip", clip, "--target", "tension", "--tau", 0.0)
    return run


def _explain_dir(run: Path) -> Path:
    (d,) = [p for p in (run / "explain").iterdir() if p.is_dir()]
    return d


@pytest.mark.slow
def test_each_folder_kind_gets_its_own_page(run: Path) -> None:
    explain_dir = _explain_dir(run)
    assert folder_kind(explain_dir) == "explanation"
    assert folder_kind(run / "l2i") == "l2i"
    l2i_example = next((run / "l2i" / "explain").iterdir())
    assert folder_kind(l2i_example) is None  # an L2I example is not a `robustmer explain`
    assert folder_kind(run / "attack" / "bim") == "attack"
    assert folder_kind(run / "xeval") == "explainer-eval"
    assert folder_kind(run) == "run"

    page = Path(invoke("report", explain_dir).strip().splitlines()[-1])
    html = page.read_text(encoding="utf-8")
    assert re.search(r"<title>[^<]*Explanation of clip [^<]+ by saliency", html)
    assert "tension" in html and "N = 6 segments" in html  # 2x3 grid
    assert re.search(r'<img alt="saliency attribution map of clip [^"]+ for tension', html)

    page = Path(invoke("report", run / "l2i").strip().splitlines()[-1])
    html = page.read_text(encoding="utf-8")
    assert re.search(r"<title>[^<]*Listen to Interpret: run run", html)
    assert html.count("<audio") >= 2

    page = Path(invoke("report", run / "attack" / "bim").strip().splitlines()[-1])
    html = page.read_text(encoding="utf-8")
    assert "A2E" in html  # the attacked run's model type, not a generic label

    # an attack folder of a study names its run by the study's layout (runs/<run>/train/)
    import shutil

    import pandas as pd
    import yaml

    study_run = run.parent / "study" / "runs" / "aA2E_seed5"
    shutil.copytree(run / "attack" / "bim", study_run / "attack" / "bim")
    cfg = yaml.safe_load((study_run / "attack" / "bim" / "config.yaml").read_text())
    (study_run / "attack" / "bim" / "config.yaml").write_text(yaml.safe_dump({**cfg,
                                                                              "run": None}))
    (study_run / "train").mkdir()
    (study_run / "train" / "config.yaml").write_text(yaml.safe_dump(
        {"model_type": "aA2E", "model": {"kind": "a2e"}, "train": {"seed": 5}}))
    invoke("report", study_run / "attack" / "bim")
    runs = pd.read_csv(study_run / "attack" / "bim" / "report-store" / "runs.csv")
    assert runs[["run_id", "model_type", "seed"]].values.tolist() == [["aA2E_seed5", "aA2E", 5]]

    page = Path(invoke("report", run).strip().splitlines()[-1])
    assert page == run / "report.html"
    html = page.read_text(encoding="utf-8")
    assert "N = 4 results in this run folder" in html
    for kind in ("explanation", "attack", "explainer-eval", "l2i"):
        assert f">{kind}</td>" in html, kind
    links = re.findall(r'<a href="([^"]+)"', html)
    assert len(links) == 4 and all((run / link).is_file() for link in links)


@pytest.mark.slow
@pytest.mark.browser
def test_folder_pages_open_cleanly_in_chromium(run: Path) -> None:
    index = Path(invoke("report", run).strip().splitlines()[-1])
    pages = [index] + [(run / link).resolve() for link in
                       re.findall(r'<a href="([^"]+)"', index.read_text(encoding="utf-8"))]
    assert len(pages) == 5
    n_audio = sum(_open_pages(pages))
    assert n_audio >= 2  # the L2I page's input and interpretation at least


def _open_pages(pages: list[Path]) -> list[int]:
    """Open each page in Chromium and check it as a reader sees it: a title, no console or
    page error, no failed request, every image decoded with alt text, every table stating N,
    every audio player loading a duration > 0. Returns the number of players per page."""
    from test_report_browser import CHROMIUM, CHROMIUM_ARGS, _benign_abort

    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} not found: the browser test needs Debian's chromium "
                    "(apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    players: list[int] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page()
            tab.on("console", lambda m: errors.append(f"console {m.type}: {m.text}")
                   if m.type == "error" else None)
            tab.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            tab.on("requestfailed", lambda r: None if _benign_abort(r) else errors.append(
                f"request failed: {r.url} ({r.failure})"))
            for path in pages:
                tab.goto(path.as_uri(), wait_until="load")
                assert tab.title().strip(), path
                images = tab.evaluate("Array.from(document.images).map(i => [i.alt, "
                                      "i.complete, i.naturalWidth])")
                for alt, complete, width in images:
                    assert alt.strip(), f"{path}: an <img> without alt text"
                    assert complete and width > 0, f"{path}: image {alt!r} did not decode"
                captions = tab.evaluate("Array.from(document.querySelectorAll('table')).map("
                                        "t => t.caption ? t.caption.textContent : '')")
                for text in captions:
                    assert re.search(r"\bN\b", text), f"{path}: a table without N: {text!r}"
                rs = tab.evaluate("""Array.from(document.querySelectorAll(
                    'span.ci[data-quantity="r"][data-low]')).map(s => [+s.dataset.low,
                    +s.dataset.high])""")
                for lo, hi in rs:
                    assert -1.0 <= lo <= hi <= 1.0, (path, lo, hi)
                tab.wait_for_function("Array.from(document.querySelectorAll('audio')).every("
                                      "a => a.readyState >= 1 || a.error)", timeout=15000)
                durations = tab.evaluate(
                    "Array.from(document.querySelectorAll('audio')).map(a => a.duration)")
                assert all(d > 0 for d in durations), (path, durations)
                players.append(len(durations))
        finally:
            browser.close()
    assert not errors, errors
    return players


@pytest.mark.slow
@pytest.mark.browser
def test_demo_report_opens_cleanly_in_chromium(tmp_path: Path) -> None:
    """The demo's own pipeline (configs/demo.yaml shrunk to seconds: data generator, plain and
    adversarially trained types, waveform budgets, the reference preset with its δ = 0 clips)
    and `robustmer report` on its store, as a reader's browser shows the page."""
    from robustmer.study.config import parse_config
    from robustmer.study.runner import run_study
    from test_demo_recipe import shrunk_demo_config

    out = tmp_path / "demo"
    run_study(parse_config({**shrunk_demo_config(), "output": str(out)}), progress=False,
              log=lambda m: None)
    page = Path(invoke("report", out).strip().splitlines()[-1])
    (n_audio,) = _open_pages([page])
    assert n_audio >= 2  # clean and adversarial audio of the listened example
    html = page.read_text(encoding="utf-8")
    assert html.count('data-quantity="r"') >= 4
