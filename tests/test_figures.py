"""Figures that read (issue 22), checked on the matplotlib objects with the Agg renderer: ε tick
labels as plain decimals that never overlap, lines only over three or more budgets, boxes only
over five or more values, colour scales that match the sign of the map (sequential from 0 for
δ², diverging for signed maps, robust percentile), readable segment scores, the L2I
spectrogram on a log-frequency axis, Figure 4 over any outputs and model types without the
inset, and an alt text on every figure."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from robustmer.explain.l2i.figure import l2i_figure, log_frequency_bands
from robustmer.explain.plots import attribution_figure, colour_scale, figure_alt, score_scale
from robustmer.explain.segments import grid_segments
from robustmer.report import eps_axis, figures
from robustmer.report.explain import map_png


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The Figure objects the report's PNG functions draw (captured before they are closed)."""
    kept: list[Figure] = []
    finish = figures.finish

    def capture(fig: Figure, path: object, alt: str | None = None) -> figures.FigurePNG:
        kept.append(fig)
        png = finish(fig, path, alt)
        FigureCanvasAgg(fig)  # plt.close took its canvas; the layout is as saved
        return png

    monkeypatch.setattr(figures, "finish", capture)
    return kept


def points(budgets: tuple[float, ...], types: tuple[str, ...] = ("A2E", "A2M2E"),
           preset: bool = False) -> pd.DataFrame:
    """A ``curves.curve_points`` table: every type at every budget (and an unbounded preset)."""
    rows = []
    settings = [("bim", e) for e in budgets] + ([("reference", float("nan"))] if preset else [])
    for (attack, eps), (q, t) in itertools.product(settings, enumerate(types)):
        m = 0.1 * (q + 1) * (1 + (np.log10(eps) + 5 if np.isfinite(eps) else 3))
        rows.append({"attack": attack, "domain": "spectrogram", "eps": eps, "model_type": t,
                     "n": 3, "delta_mae_mean": m, "delta_mae_lo": m - 0.02,
                     "delta_mae_hi": m + 0.02, "adv_mean_r_mean": 0.5, "adv_mean_r_lo": 0.4,
                     "adv_mean_r_hi": 0.6})
    return pd.DataFrame(rows)


def _eps_axes(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_xscale() == "log"]


def _joined(ax) -> list:
    """Lines that join two or more points with a visible line style."""
    return [ln for ln in ax.lines if ln.get_linestyle() not in ("None", "", " ")
            and len(ln.get_xdata()) >= 2]


def _boxes_overlap(boxes: list) -> bool:
    return any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))


def test_two_budgets_are_points_with_error_bars_three_are_curves(drawn: list[Figure]) -> None:
    figures.robustness_curves(points((1e-3, 2e-3)))
    axes = _eps_axes(drawn[-1])
    assert len(axes) == 2  # ΔMAE and attacked mean r
    for ax in axes:
        assert _joined(ax) == []  # no line from one budget to the next
        assert ax.collections  # the error bars (LineCollection)
        assert not [c for c in ax.collections if "Poly" in type(c).__name__]  # no band
    figures.robustness_curves(points((1e-3, 2e-3, 5e-3)))
    for ax in _eps_axes(drawn[-1]):
        assert len(_joined(ax)) == 2  # one curve per model type
        assert [c for c in ax.collections if "Poly" in type(c).__name__]  # and its band


@pytest.mark.parametrize("budgets", [(3e-3, 4e-3, 5e-3, 1e-2),
                                     (1e-4, 2e-4, 3e-4, 5e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2),
                                     (1e-5, 1.1e-5, 1.2e-5, 1.3e-5, 1.4e-5)])
def test_eps_tick_labels_are_plain_decimals_at_the_budgets_and_never_overlap(
        drawn: list[Figure], budgets: tuple[float, ...]) -> None:
    png = figures.robustness_curves(points(budgets, preset=True))
    fig = drawn[-1]
    fig.canvas.draw()
    for ax in _eps_axes(fig):
        assert sorted(ax.get_xticks()) == pytest.approx(sorted(budgets))
        labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
        assert labels and all(re.fullmatch(r"\d+(\.\d+)?", x) for x in labels), labels
        assert {float(x) for x in labels} <= {float(eps_axis.eps_label(e)) for e in budgets}
        assert not [t for t in ax.get_xminorticklabels() if t.get_text()]
        assert not _boxes_overlap(eps_axis.visible_tick_boxes(fig, ax))
    assert "budget" in png.alt and figures.alt_text(png) == png.alt


def test_eps_label_is_a_plain_decimal() -> None:
    assert eps_axis.eps_label(3e-3) == "0.003"
    assert eps_axis.eps_label(1e-5) == "0.00001"
    assert eps_axis.eps_label(0.25) == "0.25"


def test_box_only_with_five_values_else_points(drawn: list[Figure]) -> None:
    rng = np.random.default_rng(0)
    per_run = pd.DataFrame({"model_type": ["A2E"] * 5 + ["A2M2E"] * 3,
                            "delta_mae": rng.normal(0.2, 0.05, 8)})
    png = figures.delta_mae_boxplot(per_run)
    ax = drawn[-1].axes[0]
    # one box: its box, median, two whiskers and two caps are the only lines
    assert len(ax.lines) == 6
    box_x = {round(float(x), 6) for ln in ax.lines for x in ln.get_xdata()}
    assert all(0.5 < x < 1.5 for x in box_x)  # at A2E's position only
    assert sum(len(c.get_offsets()) for c in ax.collections) == 8  # every run as a point
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A2E\n(n = 5)", "A2M2E\n(n = 3)"]
    assert "A2M2E: 3 runs" in png.alt
    figures.delta_mae_boxplot(per_run[per_run["model_type"] == "A2M2E"])
    assert len(drawn[-1].axes[0].lines) == 0


def test_figure4_every_output_and_type_and_no_inset(drawn: list[Figure]) -> None:
    rng = np.random.default_rng(1)
    n = 6
    frame = pd.DataFrame({"model_type": ["A2E"] * n + ["aA2E"] * n + ["classifier"] * n})
    for name in ("arousal", "valence", "danceability"):
        y = rng.uniform(0, 1, 3 * n)
        frame[f"y_{name}"], frame[f"pred_{name}"] = y, y + rng.normal(0, 0.05, 3 * n)
        frame[f"adv_{name}"] = y + 0.3
    frame["y_orphan"] = 0.5  # no pred_/adv_ column: not an output
    assert figures.outputs_in(frame) == ["arousal", "valence", "danceability"]
    png = figures.prediction_scatter(frame)
    fig = drawn[-1]
    assert len(fig.axes) == 3 * 3
    assert all(not ax.child_axes for ax in fig.axes)  # no "zoom [0, 1]" inset
    assert not [t for ax in fig.axes for t in [ax.get_title()] if "zoom" in t]
    titles = {ax.get_title() for ax in fig.axes}
    assert "classifier: danceability (n = 6)" in titles
    assert "3 output(s)" in png.alt and "aA2E" in png.alt
    figures.prediction_scatter(frame, ["valence"], ["aA2E", "missing"])
    assert len(drawn[-1].axes) == 1 and drawn[-1].axes[0].get_title().startswith("aA2E")
    # the caller's selection still works positionally, as the page calls it today
    figures.prediction_scatter(frame, ("arousal",), ("A2E",))
    assert len(drawn[-1].axes) == 1
    assert "none of" in figures.prediction_scatter(frame, ["arousal"], ["A2B2E"]).alt


def test_colour_scale_sequential_from_zero_or_symmetric_diverging() -> None:
    rng = np.random.default_rng(2)
    mag = rng.uniform(0, 1, (40, 30)) ** 2
    mag[0, 0] = 1e3  # one extreme pixel
    s = colour_scale(mag, "δ²")
    assert (s.cmap, s.vmin, s.signed) == ("magma", 0.0, False)
    assert s.vmax == pytest.approx(np.percentile(mag, 99)) and "99th" in s.label
    signed = colour_scale(rng.normal(size=(40, 30)))
    assert signed.cmap == "RdBu_r" and signed.vmin == -signed.vmax and signed.signed
    tiny = colour_scale(np.abs(rng.normal(size=(10, 10))) * 1e-6)
    assert tiny.exponent == -6 and "1e-06" in tiny.label
    assert colour_scale(np.zeros((3, 3))).vmax == 1.0  # all zero: a usable scale


def test_explainer_maps_magnitude_sequential_and_signed_diverging(
        drawn: list[Figure], tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    T, F = 40, 24
    seg = np.asarray(grid_segments((T, F)))
    delta = rng.normal(0, 1e-3, (1, T, F))
    sal = np.abs(rng.normal(size=(T, F))) * 1e-7
    sal[1, 1] = 1e-3  # the pixel that left saliency maps blank at their old scale
    path = tmp_path / "007.npz"
    np.savez(path, x=rng.normal(size=(1, T, F)), delta=delta, segments=seg,
             clip_id=np.asarray("007"), rank_magnitude=np.arange(20),
             attr_magnitude=(delta[0] ** 2).astype(np.float32), rank_saliency=np.arange(20),
             attr_saliency=sal.astype(np.float32), rank_ig=np.arange(20),
             attr_ig=rng.normal(size=(T, F)).astype(np.float32))
    png = map_png(path, ["magnitude", "saliency", "ig"])
    fig = drawn[-1]
    fig.canvas.draw()
    images = {ax.get_title().split(":")[0]: ax.images[0] for ax in fig.axes if ax.images}
    mag = images["magnitude"]
    assert mag.get_clim()[0] == 0.0 and mag.get_cmap().name == "magma"
    cbar = mag.colorbar
    assert min(cbar.get_ticks()) >= 0.0 and cbar.vmin == 0.0
    assert "δ²" in cbar.ax.get_ylabel()
    sal_im = images["saliency"]
    assert sal_im.get_clim()[1] < 1e-3 / 100  # robust percentile, not the outlier
    assert "99th" in sal_im.colorbar.ax.get_ylabel()
    ig = images["ig"]
    lo, hi = ig.get_clim()
    assert lo == -hi and ig.get_cmap().name == "RdBu_r"
    d = images["perturbation δ"]
    assert d.get_clim()[0] == -d.get_clim()[1] < 0
    assert png.alt.startswith("Clip 007")
    x_im = images["clean input x"]
    assert x_im.colorbar.ax.get_ylabel() == "standardised value"
    assert x_im.axes.get_ylabel() == "band"
    map_png(path, ["magnitude"], stft=True)  # a waveform model's STFT view says so
    fig = drawn[-1]
    fig.canvas.draw()
    x_im = next(ax.images[0] for ax in fig.axes if ax.get_title() == "clean input x")
    assert x_im.colorbar.ax.get_ylabel() == "STFT magnitude"
    assert x_im.axes.get_ylabel() == "STFT bin"


def test_attribution_figure_scales_and_labels_tiny_segment_scores() -> None:
    rng = np.random.default_rng(4)
    spec = rng.normal(size=(50, 32))
    attr = np.abs(rng.normal(size=(50, 32))) * 1e-6
    seg = grid_segments((50, 32))
    scores = rng.uniform(0, 3e-6, int(np.asarray(seg).max()) + 1)
    fig = attribution_figure(spec, attr, seg, scores, title="saliency")
    ax = fig.axes[1]
    assert "1e-06" in ax.get_title()
    texts = [t for t in ax.texts]
    assert len(texts) == len(scores)
    for t, s in zip(texts, scores, strict=True):
        assert t.get_fontsize() >= 7
        assert t.get_text().split("\n")[1] == f"{s / 1e-6:.2f}"  # "1.76", not "1.8e-06"
    assert ax.images[-1].get_clim()[0] == 0.0  # non-negative: sequential from 0
    assert "saliency" in figure_alt(fig) and "non-negative" in figure_alt(fig)
    scaled, e = score_scale(np.array([0.5, -0.2]))
    assert e == 0 and scaled.tolist() == [0.5, -0.2]


def test_l2i_spectrogram_on_a_log_frequency_axis_with_readable_relevance() -> None:
    g = torch.Generator().manual_seed(0)
    T, F, K = 60, 1024, 30
    X = torch.rand(T, F, generator=g)
    parts = torch.rand(K, T, F, generator=g)
    r = torch.rand(K, generator=g)
    comps = [int(i) for i in torch.argsort(r, descending=True)[:3]]
    fig = l2i_figure(X, parts, comps, r, 0.5, sample_rate=22050, frame_size=2048,
                     title="tension")
    fig.canvas.draw()
    spectro = [ax for ax in fig.axes if ax.collections and ax.get_yscale() == "log"]
    assert len(spectro) == 1 + len(comps)
    for ax in spectro:
        lo, hi = ax.get_ylim()
        assert lo == pytest.approx(20.0) and hi == pytest.approx(1023.5 * 22050 / 2048)
    assert "Hz" in spectro[0].get_ylabel()
    bars = next(ax for ax in fig.axes if ax.patches)
    assert len(bars.patches) == 20
    assert not _boxes_overlap(eps_axis.visible_tick_boxes(fig, bars, "y"))
    assert "tension" in figure_alt(fig) and "above τ" in figure_alt(fig)


def test_log_frequency_bands_average_the_bins_of_each_band() -> None:
    bin_hz = 10.0
    img = np.tile(np.arange(100, dtype=float), (2, 1))  # value = bin index
    bands, edges = log_frequency_bands(img, bin_hz, fmin=20.0, n_bands=8)
    assert edges[0] == pytest.approx(20.0) and edges[-1] == pytest.approx(995.0)
    centres = np.arange(100) * bin_hz
    for b in range(8):
        inside = (centres >= edges[b]) & (centres < edges[b + 1])
        want = centres[inside].mean() / bin_hz if inside.any() else np.rint(
            np.sqrt(edges[b] * edges[b + 1]) / bin_hz)
        assert bands[0, b] == pytest.approx(want)


def test_every_report_figure_carries_an_alt_text(drawn: list[Figure]) -> None:
    pngs = [figures.placeholder_png("nothing"),
            figures.delta_image(np.random.default_rng(5).normal(size=(20, 10))),
            figures.robustness_curves(points((1e-3, 1e-2)))]
    for png in pngs:
        assert isinstance(png, bytes) and png.startswith(b"\x89PNG")
        assert png.alt.endswith(".") and len(png.alt) > 10
    assert figures.alt_text(b"plain bytes", "fallback") == "fallback"
    assert "red positive" in pngs[1].alt
