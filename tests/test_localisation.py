"""Localisation against a planted region: an oracle scores 1, a random map scores the region's
area share, ties and empty regions are handled, and bad shapes are refused."""

from __future__ import annotations

import math

import pytest
import torch

from robustmer.errors import ConfigError
from robustmer.explain.localisation import (
    COLUMNS,
    localisation_table,
    mass_share,
    pointing_game,
    region_share,
    segment_overlap,
    segment_pointing_game,
)
from robustmer.explain.segments import aggregate, grid_segments

T, F = 20, 24


def _region() -> torch.Tensor:
    """A voice-like region: two time spans, a few bands each; it covers one cell of the 4 x 4
    grid (frames 5-9, bands 6-11) and parts of others."""
    r = torch.zeros(T, F, dtype=torch.bool)
    r[4:10, 6:12] = True
    r[12:18, 10:13] = True
    r[12:18, 15:17] = True
    return r


def test_oracle_scores_one() -> None:
    region = _region()
    attr = region.float()[None].repeat(3, 1, 1)
    assert torch.equal(mass_share(attr, region), torch.ones(3, dtype=torch.float64))
    assert torch.equal(pointing_game(attr, region), torch.ones(3, dtype=torch.float64))
    seg = grid_segments((T, F), n_freq=4, n_time=4)
    hit, chance = segment_pointing_game(aggregate(attr, seg, "mean"), seg, region)
    assert torch.equal(hit, torch.ones(3, dtype=torch.float64))
    overlap = segment_overlap(seg, region)[0]
    assert chance[0] == pytest.approx(float((overlap >= 0.5).double().mean()))
    assert 0 < chance[0] < 0.5
    # (B, 1, T, F) maps, as the explainers return them, give the same
    assert torch.equal(mass_share(attr[:, None], region), mass_share(attr, region))


def test_random_maps_score_the_area_share() -> None:
    region = _region()
    share = float(region.double().mean())
    g = torch.Generator().manual_seed(0)
    attr = torch.randn(2000, T, F, generator=g)
    assert float(region_share(region)) == pytest.approx(share)
    for part in ("abs", "pos"):
        assert float(mass_share(attr, region, part).mean()) == pytest.approx(share, abs=0.005)
        hits = float(pointing_game(attr, region, part).mean())
        assert hits == pytest.approx(share, abs=4 * math.sqrt(share * (1 - share) / 2000))
    seg = grid_segments((T, F), n_freq=4, n_time=4)
    hit, chance = segment_pointing_game(torch.randn(2000, 16, generator=g), seg, region)
    c = float(chance[0])
    assert float(hit.mean()) == pytest.approx(c, abs=4 * math.sqrt(c * (1 - c) / 2000))


def test_parts_ties_and_empty_regions() -> None:
    region = _region()
    attr = torch.where(region, -5.0, 1.0)[None]  # negative inside, positive outside
    assert float(mass_share(attr, region, "pos")) == 0.0
    n_in = int(region.sum())
    assert float(mass_share(attr, region, "abs")) == pytest.approx(
        5 * n_in / (5 * n_in + T * F - n_in))
    assert float(pointing_game(attr, region, "abs")) == 1.0
    assert float(pointing_game(attr, region, "pos")) == 0.0
    # a constant map: every pixel ties, the pointing game scores the area share
    flat = torch.ones(1, T, F)
    assert float(pointing_game(flat, region)) == pytest.approx(float(region.double().mean()))
    # no mass, or no region: NaN
    assert math.isnan(float(mass_share(torch.zeros(1, T, F), region)))
    empty = torch.zeros(T, F, dtype=torch.bool)
    assert math.isnan(float(mass_share(flat, empty)))
    assert math.isnan(float(pointing_game(flat, empty)))
    # per-clip regions
    both = torch.stack([region, ~region])
    assert mass_share(region.float()[None].repeat(2, 1, 1), both).tolist() == [1.0, 0.0]
    # segment ties share the hit; NaN scores rank last
    seg = grid_segments((T, F), n_freq=2, n_time=1)  # two halves of the band axis
    left = torch.zeros(T, F, dtype=torch.bool)
    left[:, : F // 2] = True
    hit, chance = segment_pointing_game(torch.tensor([[1.0, 1.0], [float("nan"), 0.0]]), seg,
                                        left)
    assert hit.tolist() == [0.5, 0.0] and chance.tolist() == [0.5, 0.5]
    # min_overlap: the looser "touches the region" rule
    tiny = torch.zeros(T, F, dtype=torch.bool)
    tiny[0, 0] = True
    scores = torch.tensor([[1.0, 0.0]])
    assert float(segment_pointing_game(scores, seg, tiny)[0]) == 0.0
    assert float(segment_pointing_game(scores, seg, tiny, min_overlap=1e-9)[0]) == 1.0


def test_table() -> None:
    region = _region()
    g = torch.Generator().manual_seed(1)
    attr = torch.randn(3, 1, T, F, generator=g)
    attr[0, 0] = region.float()
    seg = grid_segments((T, F), n_freq=4, n_time=4)
    table = localisation_table(attr, region, ["a", "b", "c"], segments=seg)
    assert list(table.columns) == list(COLUMNS)
    assert table["clip_id"].tolist() == ["a", "b", "c"]
    assert table.loc[0, "mass_share"] == 1.0 and table.loc[0, "pointing_pixel"] == 1.0
    assert table.loc[0, "pointing_segment"] == 1.0
    assert table["region_share"].tolist() == pytest.approx([float(region.double().mean())] * 3)
    plain = localisation_table(attr, region)
    assert plain["pointing_segment"].isna().all() and plain["clip_id"].tolist() == ["0", "1",
                                                                                    "2"]


def test_bad_arguments_raise_config_error() -> None:
    region = _region()
    attr = torch.rand(2, T, F)
    seg = grid_segments((T, F))
    cases = [
        (lambda: mass_share(torch.rand(T, F), region), "attribution"),
        (lambda: mass_share(torch.rand(2, 3, T, F), region), "attribution"),
        (lambda: mass_share(attr, region.float()), "region"),
        (lambda: mass_share(attr, region[:, :-1]), "region"),
        (lambda: mass_share(attr, torch.stack([region] * 3)), "region"),
        (lambda: mass_share(attr, region, "square"), "part"),
        (lambda: pointing_game(attr, region[None]), "region"),
        (lambda: segment_pointing_game(torch.rand(2, 7), seg, region), "segment_scores"),
        (lambda: segment_pointing_game(torch.rand(2, 20), seg, region, 0.0), "min_overlap"),
        (lambda: segment_pointing_game(torch.rand(2, 20), seg.float(), region), "segments"),
        (lambda: localisation_table(attr, region, ["a"]), "clip_ids"),
        (lambda: localisation_table(attr, region, segment_scores=torch.rand(2, 20)),
         "segment_scores"),
    ]
    for call, name in cases:
        with pytest.raises(ConfigError, match=name):
            call()
