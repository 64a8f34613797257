"""The HTML report without a browser: sections present, figures embedded as valid PNGs, audio
players pointing at existing files, side-by-side comparison, and the import boundary."""

from __future__ import annotations

import base64
import re
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
from robustmer.report.html import build_report
from robustmer.report.page import FIGURES_DIR

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
    assert len(imgs) == 2 + len(EMOTIONS)  # figure 3, figure 4 per output, one rendered delta
    for img in imgs:
        assert (img["alt"] or "").strip(), img["alt"]
        src = img["src"] or ""
        assert src.startswith("data:image/png;base64,")
        w, h = _png_size(base64.b64decode(src.split(",", 1)[1]))
        assert w > 50 and h > 50
    audios = _tags(page, "audio")
    assert len(audios) == 4  # two A2E clips, clean + adversarial
    for a in audios:
        target = out.parent / urllib.parse.unquote(a["src"] or "")
        assert target.is_file(), target
    assert sorted(p.name for p in (out.parent / FIGURES_DIR).iterdir()) == sorted(
        ["robustmer-res-figure3.png"] + [f"robustmer-res-figure4-{e}.png" for e in EMOTIONS])


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
    # the two sources have distinct figure files (Figure 3, and Figure 4 per output)
    assert len(list((out.parent / FIGURES_DIR).glob("*.png"))) == 2 * (1 + len(EMOTIONS))


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


# --- a small study store with the cases issue 22 names --------------------------------------

STUDY_OUTPUTS = ("valence", "energy")
STUDY_TYPES = ("A2E", "A2M2E", "aA2E")  # aA2E: adversarially trained A2E (registry)
STUDY_BUDGETS = (1e-3, 1e-2)
REFERENCE = ("reference", "spectrogram", float("nan"))


def make_study_store(root: Path, n_clips: int = 8, seeds: tuple[int, ...] = (1, 2)
                     ) -> ResultsStore:
    """A study-like store: 3 model types x 2 seeds, two bounded BIM budgets (waveform) and the
    reference preset, whose clips 000-002 of every run returned δ = 0 (infinite SNR, zero norms)
    with a logged error that still rose; clip 003 of A2E had a zero-gradient start; real WAV
    media (1 s) for A2E seed 1; config.yaml names the study's first setting (media source)."""
    rng = np.random.default_rng(5)
    store = ResultsStore(root)
    frames, runs = [], []
    ids = [f"{i:03d}" for i in range(n_clips)]
    shift = {"A2E": 0.25, "A2M2E": 0.2, "aA2E": 0.05}
    cases = [("bim", "waveform", e, k + 1.0) for k, e in enumerate(STUDY_BUDGETS)]
    cases.append((*REFERENCE, 2.0))
    for t in STUDY_TYPES:
        for s in seeds:
            y = np.random.default_rng(s).uniform(0.1, 0.8, (n_clips, len(STUDY_OUTPUTS)))
            p = y + rng.normal(0, 0.05, y.shape)
            for attack, domain, eps, scale in cases:
                a = p + np.abs(rng.normal(shift[t] * scale, 0.1, y.shape))
                snr = rng.uniform(25, 35, n_clips)
                linf = np.full(n_clips, 1e-3)
                zg = np.zeros(n_clips, dtype=bool)
                if attack == "reference":
                    snr[:3], linf[:3] = np.inf, 0.0
                if t == "A2E" and attack == "bim":
                    zg[3] = True
                c = clips_frame(f"{t}_seed{s}", t, s, ids, y, p, a, attack=attack,
                                domain=domain, eps=eps, snr_db=snr, delta_linf=linf,
                                delta_l2=np.where(linf == 0, 0.0, 0.5),
                                iterations=np.full(n_clips, 10), zero_grad_start=zg,
                                names=STUDY_OUTPUTS)
                frames.append(c)
                runs.append(run_row(f"{t}_seed{s}", t, s, clips=c, names=STUDY_OUTPUTS))
    runs.append(run_row("A2E_seed9", "A2E", 9, "failed", "out of memory",
                        names=STUDY_OUTPUTS))
    clips = pd.concat(frames, ignore_index=True)
    clips["zero_grad_start"] = clips["zero_grad_start"].astype("boolean").fillna(False)
    store.write_clips(clips)
    store.write_runs(pd.DataFrame(runs))
    store.write_config({"name": "study", "comparisons": [["A2E", "A2M2E"]], "attack": {
        "name": "bim", "domain": "waveform", "eps": list(STUDY_BUDGETS),
        "settings": [{"id": "bim-waveform-eps0.001", "domain": "waveform",
                      "attack": {"name": "bim", "eps": 1e-3}}]}})
    store.write_meta(run_meta(source="robustmer"))
    t = np.arange(22050) / 22050
    wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for clip in ("000", "001"):
        path = store.media_path("A2E_seed1", clip, "clean.wav")
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, wave, 22050)
        sf.write(store.media_path("A2E_seed1", clip, "adv.wav"), wave * 0.9, 22050)
    return store


def _spans(page: str) -> list[dict[str, str | None]]:
    return [a for a in _tags(page, "span") if "ci" in (a.get("class") or "").split()]


class _Captions(HTMLParser):
    """Per ``<table>``: the text of its ``<caption>`` ("" when it has none)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[str] = []
        self._in = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append("")
        self._in = self._in or tag == "caption"

    def handle_endtag(self, tag: str) -> None:
        self._in = self._in and tag != "caption"

    def handle_data(self, data: str) -> None:
        if self._in and self.tables:
            self.tables[-1] += data


def test_study_report_states_n_intervals_family_and_every_clip(tmp_path: Path) -> None:
    store = make_study_store(tmp_path / "study")
    page = build_report(store.path, n_boot=200).read_text(encoding="utf-8")
    # every table states its N in its caption
    cap = _Captions()
    cap.feed(page)
    assert len(cap.tables) >= 10
    for text in cap.tables:
        assert re.search(r"\bN\b", text), text
    # intervals are machine-readable; a correlation's never leaves [-1, 1]
    spans = _spans(page)
    r = [s for s in spans if s["data-quantity"] == "r" and s.get("data-low")]
    assert len(r) == 3 * 3 + 3 * 3  # Table 1: 3 types x 3 settings; the curves: the same
    for s in spans:
        if s.get("data-low"):
            assert float(s["data-low"] or "") <= float(s["data-high"] or ""), s
    for s in r:
        assert float(s["data-low"] or "") >= -1.0 and float(s["data-high"] or "") <= 1.0, s
    # one family, stated once: the store's pair and adversarially trained vs plain, Holm
    assert page.count("One family of planned comparisons") == 1
    assert "planned: A2E vs A2M2E" in page
    assert "adversarially trained vs plain (same head): aA2E vs A2E" in page
    # 2 pairs x (3 settings + 1 curve area) = 8 tests, Holm over m = 8
    assert "Holm&#x27;s step-down correction over all m = 8 at α = 0.05" in page
    assert "aA2E vs A2E (adversarial training)" in page and "t(15)=" in page
    # every clip accounted for: the δ = 0 clips counted, the rise explained, zero-grad starts
    assert "18 of 48 clips have δ = 0" in page  # 3 clips x 6 runs at the reference preset
    assert "A2E 6, A2M2E 6, aA2E 6" in page
    assert "18 of these δ = 0 clips still show a higher error" in page
    assert "logs the prediction at the last evaluated δ" in page
    assert "2 clips had a zero gradient at the clean input" in page
    assert "converged = the attack passed its stopping rule" in page
    # audio: metadata preloaded, the setting of the adversarial audio named
    audios = _tags(page, "audio")
    assert len(audios) == 4 and all(a["preload"] == "metadata" for a in audios)
    assert "adversarial, bim eps=0.001 (waveform)" in page
    # Figure 4: one figure per output, a select to pick; every image has alt text
    assert page.count('<figure data-output="') == 3 * len(STUDY_OUTPUTS)
    assert page.count("<select data-pick=") == 3
    assert all((img.get("alt") or "").strip() for img in _tags(page, "img"))
    # the versions as a table, not a dict dump
    assert "<caption>Versions the report ran with (N = " in page
    assert "{&#x27;robustmer&#x27;" not in page
