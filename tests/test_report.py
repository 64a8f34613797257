"""The HTML report without a browser: sections present, figures embedded as valid PNGs, audio
players pointing at existing files, side-by-side comparison, and the import boundary."""

from __future__ import annotations

import base64
import struct
import subprocess
import sys
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from robustmer import EMOTIONS
from robustmer.errors import ConfigError, DatasetError
from robustmer.evaluate.store import ResultsStore
from robustmer.evaluate.summary import clips_frame, run_row
from robustmer.io import run_meta
from robustmer.report.html import FIGURES_DIR, build_report

SEEDS = (6, 21)
N_CLIPS = 6


def make_store(root: Path, types: tuple[str, ...] = ("A2E", "A2B2E", "A2M2E"),
               seed: int = 0) -> ResultsStore:
    """A small results store: every type x SEEDS, a not-runnable aA2E run, and media."""
    rng = np.random.default_rng(seed)
    store = ResultsStore(root)
    frames, runs = [], []
    for t in types:
        for s in SEEDS:
            y = np.random.default_rng(s).uniform(0.1, 0.8, (N_CLIPS, 8))
            p = y + rng.normal(0, 0.05, y.shape)
            a = p + rng.normal(0.3, 0.3, y.shape)
            c = clips_frame(f"{t}_{s}", t, s, [f"{i:03d}" for i in range(N_CLIPS)], y, p, a,
                            snr_db=rng.uniform(25, 35, N_CLIPS),
                            delta_linf=np.full(N_CLIPS, 1e-3), iterations=np.full(N_CLIPS, 7),
                            names=EMOTIONS)
            frames.append(c)
            runs.append(run_row(f"{t}_{s}", t, s, clips=c, names=EMOTIONS))
    runs.append(run_row("aA2E_6", "aA2E", 6, "not_runnable", "needs <mid-level> data",
                        names=EMOTIONS))
    store.write_clips(pd.concat(frames, ignore_index=True))
    store.write_runs(pd.DataFrame(runs))
    store.write_config({"name": "tiny", "attack": {"eps": 0.001}})
    store.write_meta(run_meta(source="robustmer"))
    wave = np.sin(np.linspace(0, 400, 2205)).astype(np.float32) * 0.5
    if "A2E" in types:
        store.media_path("A2E_6", "000", "clean.wav").parent.mkdir(parents=True)
        for clip in ("000", "001"):
            sf.write(store.media_path("A2E_6", clip, "clean.wav"), wave, 22050)
            sf.write(store.media_path("A2E_6", clip, "adv.wav"), wave * 0.9, 22050)
    if "A2M2E" in types:
        d = store.media_path("A2M2E_6", "003", "delta.npz")
        d.parent.mkdir(parents=True, exist_ok=True)
        np.savez(d, delta=rng.normal(0, 1e-3, (1, 31, 149)))
    return store


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(page: str, name: str) -> list[dict[str, str | None]]:
    p = _Tags()
    p.feed(page)
    return [a for t, a in p.tags if t == name]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_report_sections_figures_and_media(tmp_path: Path) -> None:
    store = make_store(tmp_path / "res")
    out = build_report(store.path)
    assert out == store.path / "report.html"
    page = out.read_text(encoding="utf-8")
    for text in ("Table 1", "Figure 3", "Figure 4", "paired t-tests", "Perceptibility",
                 "Listen", "config.yaml", "meta.json", "Report generated with", "torch"):
        assert text in page, text
    assert "A2E vs A2M2E" in page and "A2B2E vs A2M2E" in page
    assert "t(11)=" in page  # 2 seeds x 6 clips = 12 pairs
    assert "needs &lt;mid-level&gt; data" in page  # escaped message of the not-runnable run
    imgs = _tags(page, "img")
    assert len(imgs) == 3  # figure 3, figure 4, one rendered delta
    for img in imgs:
        src = img["src"] or ""
        assert src.startswith("data:image/png;base64,")
        w, h = _png_size(base64.b64decode(src.split(",", 1)[1]))
        assert w > 50 and h > 50
    audios = _tags(page, "audio")
    assert len(audios) == 4  # two A2E clips, clean + adversarial
    for a in audios:
        target = out.parent / urllib.parse.unquote(a["src"] or "")
        assert target.is_file(), target
    assert sorted(p.name for p in (out.parent / FIGURES_DIR).iterdir()) == [
        "robustmer-res-figure3.png", "robustmer-res-figure4.png"]


def test_report_compare_and_out_elsewhere(tmp_path: Path) -> None:
    main = make_store(tmp_path / "ours")
    other = make_store(tmp_path / "published", types=("A2E", "A2M2E"), seed=1)
    out = build_report(main.path, tmp_path / "site" / "page.html", [other.path], media_clips=1,
                       comparisons=[("A2E", "A2M2E"), ("A2B2E", "A2M2E")])
    page = out.read_text(encoding="utf-8")
    assert 'id="side-by-side"' in page
    assert "robustmer (ours)" in page and "robustmer (published)" in page
    assert "skipped: no results for A2B2E" in page
    audios = _tags(page, "audio")
    # media_clips=1: one A2E clip (clean + adversarial) from each store
    assert sorted(a["src"] for a in audios) == [
        f"../{name}/media/A2E_6/000_{k}.wav" for name in ("ours", "published")
        for k in ("adv", "clean")]
    for a in audios:
        assert (out.parent / urllib.parse.unquote(a["src"] or "")).is_file()
    # the two sources have distinct figure files
    assert len(list((out.parent / FIGURES_DIR).glob("*.png"))) == 4


def test_report_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"runs\.csv"):
        build_report(tmp_path)
    store = make_store(tmp_path / "res")
    with pytest.raises(ConfigError, match="--emotion 'joy'"):
        build_report(store.path, emotions=("joy",))


def test_report_never_imports_study_train_or_cli() -> None:
    code = ("import sys, robustmer.report, robustmer.report.html; "
            "bad = [m for m in sys.modules if m.startswith(('robustmer.study', "
            "'robustmer.train', 'robustmer.cli'))]; print(bad); assert not bad")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
