"""The voice task integrated (issue 21): excerpts labelled where the synthesiser put the voice,
a small detector trained through ``train_run``, the default attack succeeding on it, and the
standard tests (sanity checks, localisation, deletion) on the integrated path, with the report
drawing them."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from robustmer.data import prepare_data
from robustmer.data.torchdata import ShuffledLabels
from robustmer.data.voice import LABELS, synthesize_voice
from robustmer.data.voicedata import (
    VoiceData,
    VoiceExcerptDataset,
    detection_scores,
    excerpt_id,
    parse_excerpt_id,
    prepare_voice,
)
from robustmer.errors import ConfigError, DatasetError
from robustmer.explain import grid_segments, make_explainer
from robustmer.explain.base import Explanation
from robustmer.explain.evaluation import DEFAULT_ATTACKS, default_attack, predict
from robustmer.explain.standard import INPUT, RANDOM_MAP, sanity_summary, standard_tests
from robustmer.train import TrainConfig, train_run

pytestmark = pytest.mark.usefixtures("one_thread")

FRAMES = 50


@pytest.fixture(scope="module")
def voice_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("voice") / "ds"
    synthesize_voice(root, clips=14, seed=3, duration=5.0, p_voice=0.7, snr_db=(-6.0, 0.0))
    return root


@pytest.fixture(scope="module")
def voice(voice_root: Path) -> VoiceData:
    return prepare_voice(voice_root)


@pytest.fixture(scope="module")
def detector(voice: VoiceData, tmp_path_factory: pytest.TempPathFactory) -> nn.Module:
    """A small detector trained through ``train_run`` (about 20 s on one thread)."""
    run = tmp_path_factory.mktemp("det") / "run"
    config = TrainConfig(seed=0, lr=3e-3, batch_size=32, max_epochs=4, patience=5,
                         lr_schedule="onecycle")
    result = train_run(voice.excerpts("train", hop=1, mode="random"),
                       voice.excerpts("val", hop=5), run, model_type="classifier",
                       model_settings={"width": 0.0625, "dropout": 0.0}, config=config,
                       data_description=voice.to_dict(), progress=False)
    return result.model.eval()


def _test_batch(voice: VoiceData, n: int = 24) -> tuple[list[str], torch.Tensor, np.ndarray]:
    ds = voice.excerpts("all", hop=10)
    rows = np.linspace(0, len(ds) - 1, n).astype(int)
    items = [ds[int(i)] for i in rows]
    return ([str(it["id"]) for it in items], torch.stack([it["x"] for it in items]),
            np.array([int(it["label"]) for it in items]))


# ------------------------------------------------------------------------- data


def test_excerpt_labels_are_the_central_frames_where_the_voice_was_put(voice: VoiceData
                                                                       ) -> None:
    ds = voice.excerpts("all", hop=7)
    assert isinstance(ds, VoiceExcerptDataset) and ds.classes == LABELS
    seen_voice = seen_none = 0
    for i in range(len(ds)):
        item = ds[i]
        clip, start = parse_excerpt_id(item["id"])
        truth = voice.voice.truth(clip)
        assert item["x"].shape == (1, FRAMES, 149)
        centre = start + FRAMES // 2
        assert int(item["label"]) == int(truth["labels"][centre])
        # a voiced centre lies inside one of the spans the synthesiser planted
        inside = any(a <= centre < b for a, b in truth["span_frames"])
        assert inside == bool(item["label"])
        seen_voice += int(item["label"])
        seen_none += 1 - int(item["label"])
        # the planted region is the mask of the excerpt's frames, empty without voice
        region = voice.region(item["id"])
        assert region.shape == (FRAMES, 149)
        np.testing.assert_array_equal(region, truth["mask"][start:start + FRAMES])
        if not truth["labels"][start:start + FRAMES].any():
            assert not region.any()
    assert seen_voice > 5 and seen_none > 5
    # the input is the standardised spectrogram of the audio as written
    clip, start = parse_excerpt_id(ds[3]["id"])
    spec = voice.standardizer.transform(voice.specs[clip][start:start + FRAMES])
    np.testing.assert_allclose(ds[3]["x"][0].numpy(), spec, atol=1e-6)


def test_random_mode_shifts_starts_and_keeps_the_length(voice: VoiceData) -> None:
    ds = voice.excerpts("train", hop=4, mode="random", seed=1)
    n = len(ds)
    starts = set()
    for epoch in range(1, 6):
        ds.set_epoch(epoch)
        assert len(ds) == n
        ids = ds.ids
        starts.add(parse_excerpt_id(ids[0])[1])
        for cid in ids[:40]:
            clip, start = parse_excerpt_id(cid)
            assert 0 <= start <= voice.specs[clip].shape[0] - FRAMES
    assert len(starts) > 1  # the offset moves between epochs
    ds.set_epoch(3)
    again = voice.excerpts("train", hop=4, mode="random", seed=1)
    again.set_epoch(3)
    assert again.ids == ds.ids  # reproducible from (seed, epoch)


def test_prepare_data_dispatches_and_records(voice_root: Path, tmp_path: Path) -> None:
    split = tmp_path / "split.json"
    data = prepare_data(voice_root, split_path=split)
    assert isinstance(data, VoiceData) and split.is_file()
    desc = data.to_dict()
    assert desc["kind"] == "voice" and desc["classes"] == list(LABELS)
    assert desc["excerpt_frames"] == FRAMES
    again = prepare_data(voice_root, split_path=split)
    assert again.content_id == data.content_id and again.split == data.split
    assert data.dataset_for({"kind": "spectrogram"}, "val").hop == 4
    with pytest.raises(ConfigError, match="waveform"):
        data.dataset_for({"kind": "waveform", "sample_rate": 16000, "seconds": 1.0}, "val")
    assert excerpt_id("007", 42) == "007_f42" and parse_excerpt_id("007_f42") == ("007", 42)
    with pytest.raises(DatasetError, match="excerpt id"):
        parse_excerpt_id("007")


def test_shuffled_labels_permute_the_labels(voice: VoiceData) -> None:
    ds = voice.excerpts("all", hop=6)
    shuffled = ShuffledLabels(ds, seed=4)
    real = ds.labels()
    fake = np.array([int(shuffled[i]["label"]) for i in range(len(ds))])
    assert sorted(fake.tolist()) == sorted(real.tolist())
    assert (fake != real).any()
    assert shuffled.classes == ds.classes
    np.testing.assert_array_equal(shuffled[2]["x"].numpy(), ds[2]["x"].numpy())


def test_detection_scores_known_answer() -> None:
    s = detection_scores(np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 0, 1]))
    assert s["error"] == pytest.approx(0.2) and s["recall"] == 1.0
    assert s["specificity"] == pytest.approx(2 / 3) and s["voiced_share"] == pytest.approx(0.4)


# ------------------------------------------------------------------ the default attack


@pytest.mark.slow
def test_default_attack_succeeds_on_a_trained_detector(voice: VoiceData,
                                                       detector: nn.Module) -> None:
    _ids, x, labels = _test_batch(voice)
    pred = predict(detector, x).argmax(1)
    assert float((pred.numpy() == labels).mean()) >= 0.75  # the detector learned
    attack = default_attack("classification")
    assert attack.config()["confidence"] == DEFAULT_ATTACKS["classification"]["confidence"]
    target = 1 - pred
    res = attack(detector, x, target)
    adv = predict(detector, res.x_adv)
    success = adv.argmax(1) == target
    assert float(success.float().mean()) >= 0.9
    p = torch.softmax(adv, 1).gather(1, target[:, None])[:, 0]
    assert float(p[success].median()) >= 0.98  # past the boundary by the asked margin
    assert float(res.delta.flatten(1).norm(dim=1).max()) <= 10.0 + 1e-4


# ------------------------------------------------------------------ the standard tests


class _Oracle:
    """Explains with the planted region itself (looked up by the input's bytes)."""

    name = "oracle"

    def __init__(self, regions: dict[str, np.ndarray]) -> None:
        self.regions = regions

    @staticmethod
    def key(x: torch.Tensor) -> str:
        return hashlib.sha256(x.detach().float().cpu().numpy().tobytes()).hexdigest()

    def __call__(self, model: nn.Module, x: torch.Tensor, target: Any,
                 segments: torch.Tensor | None = None) -> Explanation:
        from robustmer.explain.segments import aggregate

        maps = torch.stack([torch.as_tensor(self.regions[self.key(x[i])], dtype=torch.float32)
                            [None] for i in range(x.shape[0])])
        scores = None if segments is None else aggregate(maps, segments, "mean")
        return Explanation("oracle", torch.as_tensor(target).reshape(-1), maps, scores)

    def config(self) -> dict[str, str]:
        return {"method": self.name}


@pytest.mark.slow
def test_standard_tests_on_the_trained_detector(voice: VoiceData, detector: nn.Module,
                                                tmp_path: Path) -> None:
    from robustmer.report.explain import localisation_summary

    ids, x, _labels = _test_batch(voice, 16)
    regions = {i: voice.region(i) for i in ids}
    items = [{"id": i, "x": x[j], "target": 1, "region": regions[i]}
             for j, i in enumerate(ids)]
    assert sum(r.any() for r in regions.values()) >= 4
    oracle = _Oracle({_Oracle.key(x[j]): regions[i] for j, i in enumerate(ids)})
    explainers = {"saliency": make_explainer("saliency"), "oracle": oracle}
    seg = grid_segments((FRAMES, 149), 4, 5)
    res = standard_tests(detector, items, seg, explainers, tmp_path, task="classification",
                         shuffled_model=None, sanity_clips=4, n_random=2, seed=0,
                         min_overlap=0.05)
    loc = res.localisation
    oracle_loc = loc[loc["method"] == "oracle"]
    assert len(oracle_loc) == sum(r.any() for r in regions.values())
    np.testing.assert_allclose(oracle_loc["mass_share"], 1.0)
    np.testing.assert_allclose(oracle_loc["pointing_pixel"], 1.0)
    rand = loc[loc["method"] == RANDOM_MAP]
    # a random map puts the region's area share of its mass there (uniform noise: within 25 %)
    np.testing.assert_allclose(rand["mass_share"], rand["region_share"], rtol=0.25)
    summary = localisation_summary(loc).set_index("method")
    assert summary.loc["oracle", "mass_share"] == pytest.approx(1.0)
    # the sanity checks flag the model-ignoring reference and pass saliency
    verdicts = sanity_summary(res.cascade, res.data_randomisation).set_index("method")
    assert not bool(verdicts.loc[INPUT, "cascade_passed"])
    assert verdicts.loc[INPUT, "cascade_median"] == pytest.approx(1.0)
    assert bool(verdicts.loc["saliency", "cascade_passed"])
    # deletion / insertion: every method and the random order, S + 1 points per clip
    auc = res.deletion_auc
    assert set(auc["method"]) == {"saliency", "oracle", "random"}
    curves = res.deletion_curves
    assert curves.groupby(["clip_id", "method", "mode"]).size().eq(21).all()
    # resumable: a second call finds every method done and changes nothing
    again = standard_tests(detector, items, seg, explainers, tmp_path, task="classification",
                           sanity_clips=4, n_random=2, seed=0, min_overlap=0.05, resume=True)
    pd.testing.assert_frame_equal(again.cascade, res.cascade)
    with pytest.raises(ConfigError, match="different settings"):
        standard_tests(detector, items, seg, explainers, tmp_path, task="classification",
                       sanity_clips=3, n_random=2, seed=0, min_overlap=0.05, resume=True)


def test_standard_tests_refuse_bad_arguments(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(8 * 6, 2))
    items = [{"id": "a", "x": torch.zeros(1, 8, 6)}]
    seg = grid_segments((8, 6), 2, 2)
    with pytest.raises(ConfigError, match="reserved"):
        standard_tests(model, items, seg, {"input": make_explainer("saliency")}, tmp_path,
                       task="classification")
    with pytest.raises(ConfigError, match="task"):
        standard_tests(model, items, seg, {}, tmp_path, task="ranking")
    with pytest.raises(ConfigError, match="no items"):
        standard_tests(model, [], seg, {}, tmp_path, task="classification")


@pytest.mark.slow
def test_cli_voice_data_train_evaluate_and_explainer_eval(tmp_path: Path) -> None:
    """The user's path: `data voice`, `train` a detector (and its shuffled-label control),
    `evaluate` (error, recall, specificity), `explainer-eval` with both directions balanced and
    the standard tests, `report`."""
    import json

    from typer.testing import CliRunner

    from robustmer.cli import app

    def invoke(*args: Any) -> str:
        res = CliRunner().invoke(app, [str(a) for a in args])
        assert res.exit_code == 0, (args, res.output, res.exception)
        return res.output

    data = tmp_path / "voice"
    assert "wrote 10 clips" in invoke("data", "voice", "--out", data, "--clips", 10,
                                      "--duration", 5, "--snr-low", -6, "--snr-high", 0,
                                      "--seed", 1)
    train = ("train", "--model", "classifier", "--data", data, "--width", 0.0625, "--dropout",
             0, "--epochs", 1, "--batch-size", 32, "--lr", 3e-3, "--lr-schedule", "onecycle",
             "--no-progress")
    invoke(*train, "--out", tmp_path / "det")
    invoke(*train, "--shuffle-labels", 2, "--out", tmp_path / "det-shuffled")
    recorded = json.loads((tmp_path / "det-shuffled" / "best" / "data.json").read_text())
    assert recorded["kind"] == "voice" and recorded["shuffled_labels"] == 2
    text = invoke("evaluate", tmp_path / "det")
    assert "recall" in text and "specificity" in text
    metrics = json.loads((tmp_path / "det" / "metrics_test.json").read_text())
    assert 0 <= metrics["error"] <= 1 and metrics["n"] > 50
    out = tmp_path / "xeval"
    text = invoke("explainer-eval", tmp_path / "det", "--methods", "saliency,lime", "--param",
                  "lime.n_samples=32", "--split", "all", "--per-class", 3, "--k", "1-4",
                  "--recovery-k", "1", "--standard-clips", 4, "--sanity-clips", 2,
                  "--sanity-layers", 2, "--shuffled-run", tmp_path / "det-shuffled",
                  "--out", out, "--no-progress")
    assert "(classification)" in text and "sanity checks on 2 clips" in text
    adv = pd.read_csv(out / "adversarial.csv", dtype={"clip_id": str})
    assert adv["clean_class"].value_counts().max() <= 3
    assert all(parse_excerpt_id(c)[1] % 50 == 0 for c in adv["clip_id"])  # --excerpt-hop 50
    data_rand = pd.read_csv(out / "sanity_data.csv", dtype={"clip": str})
    assert set(data_rand["method"]) == {"saliency", "lime", "input"}
    invoke("report", out)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "Sanity checks" in page and "Deletion and insertion" in page
    assert "no_voice →" in page or "voice →" in page
