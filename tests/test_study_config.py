from pathlib import Path

import pytest

from robustmer.errors import ConfigError
from robustmer.study.config import DEFAULT_MODELS, load_config, parse_config

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "robustmer" / "configs"


def test_shipped_configs_parse() -> None:
    paper = load_config(CONFIGS / "paper.yaml")
    assert paper.seeds == (6, 21, 42, 796, 950, 2025, 2324, 2451, 3100, 7192)
    assert set(paper.models) == set(DEFAULT_MODELS)
    assert (paper.train.epochs, paper.train.patience, paper.train.lr) == (200, 50, 5e-4)
    (setting,) = paper.attack.settings  # one budget, as the paper
    assert setting.spec.name == "bim" and setting.domain == "spectrogram"
    s = setting.spec.settings
    assert (s["max_iters"], s["eps"], s["eta"], s["stop"]) == (1000, 0.001, 0.002, "corr")
    demo = load_config(CONFIGS / "demo.yaml")
    assert demo.data.root is None and demo.train.width < 1.0
    # a few honest budgets beside the reference preset
    assert [x.id for x in demo.attack.settings] == [
        "bim-waveform-eps0.001", "bim-waveform-eps0.004", "reference-spectrogram"]
    repo = Path(__file__).resolve().parents[1] / "configs"
    for name in ("demo.yaml", "paper.yaml"):  # the copies beside the repository say the same
        assert load_config(repo / name) == load_config(CONFIGS / name)
    assert demo.train.standardize_targets  # docs/demo.md: without it A2M2E does not learn
    assert not paper.train.standardize_targets and paper.train.lr_schedule == "constant"
    # every departure of the demo's train block from the paper is named in its comments
    text = (CONFIGS / "demo.yaml").read_text()
    for key in ("width", "dropout", "epochs", "lr", "standardize_targets", "bn_recalibrate",
                "adv_iters", "adv_eps", "iters"):
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(f"{key}:"))
        assert "departure" in line, key


def test_every_packaged_config_parses_and_the_embedded_study_meets_its_issue() -> None:
    from robustmer.cli.study import PACKAGED_CONFIGS

    for name in PACKAGED_CONFIGS:
        load_config(CONFIGS / f"{name}.yaml")
    emb = load_config(CONFIGS / "embedded.yaml")  # issue 14 part 3: >= 3 seeds, >= 5 budgets
    assert len(emb.seeds) >= 3 and set(emb.models) == set(DEFAULT_MODELS)
    bounded = [x for x in emb.attack.settings if x.spec.name == "bim"]
    assert len(bounded) >= 5 and emb.checks is not None
    assert (emb.train.epochs, emb.train.patience, emb.data.synth_clips) == (200, 50, 240)
    # the generator and network its documented results were measured with
    assert (emb.data.synth_format, emb.train.dropout) == (2, 0.3)
    assert load_config(CONFIGS / "checks-cpu.yaml").data.synth_format == 2
    demo = load_config(CONFIGS / "demo.yaml")
    assert (demo.data.synth_format, demo.train.dropout) == (3, 0.0)


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"models": ["A2X"]}, "A2X"),
        ({"seeds": [1, 1]}, "duplicates"),
        ({"train": {"epocs": 3}}, "epocs"),
        ({"train": {"epochs": "ten"}}, "train.epochs"),
        ({"attack": {"domain": "time"}}, "attack.domain"),
        ({"attack": {"eps": 0}}, "attack.eps"),
        ({"colour": "red"}, "colour"),
        ({"train": {"lr_schedule": "cosine"}}, "train.lr_schedule"),
        ({"train": {"bn_recalibrate": "yes"}}, "train.bn_recalibrate"),
        ({"train": {"dropout": 1.0}}, "train.dropout"),
        ({"data": {"synth_format": 1}}, "data.synth_format"),
    ],
)
def test_bad_values_name_the_key(patch: dict, needle: str) -> None:
    raw = {"name": "x", "output": "out", "seeds": [1]}
    raw.update(patch)
    with pytest.raises(ConfigError, match=needle):
        parse_config(raw, source="cfg.yaml")


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        load_config(bad)


def test_train_departures_reach_the_trainer() -> None:
    from robustmer.study.runner import _train_config

    cfg = parse_config({"name": "x", "output": "out", "seeds": [1], "train": {
        "standardize_targets": True, "lr_schedule": "onecycle", "bn_recalibrate": True,
        "amp": True}})
    tc = _train_config(cfg, 3, adversarial=False)
    assert (tc.standardize_targets, tc.lr_schedule, tc.bn_recalibrate, tc.amp) == (
        True, "onecycle", True, True)
    plain = _train_config(parse_config({"name": "x", "output": "out", "seeds": [1]}), 3, False)
    assert (plain.standardize_targets, plain.lr_schedule, plain.bn_recalibrate, plain.amp) == (
        False, "constant", False, False)


def test_a_store_from_before_format_3_resumes_as_format_2(tmp_path: Path) -> None:
    """Study folders written before ``data.synth_format`` and ``train.dropout`` existed hold
    format-2 data and dropout-0.3 models: the same config with ``synth_format: 2`` continues
    there, the new default (3) is refused, and so is another dropout."""
    from robustmer.evaluate.store import ResultsStore
    from robustmer.study.runner import _check_resumable

    store = ResultsStore(tmp_path)
    old = parse_config({"name": "x", "output": "out", "seeds": [1]}).to_dict()
    del old["data"]["synth_format"], old["train"]["dropout"]  # keys added since
    store.write_config(old)
    _check_resumable(store, parse_config({"name": "x", "output": "out", "seeds": [1],
                                          "data": {"synth_format": 2}}))
    with pytest.raises(ConfigError, match="synth_format"):
        _check_resumable(store, parse_config({"name": "x", "output": "out", "seeds": [1]}))
    with pytest.raises(ConfigError, match="dropout"):
        _check_resumable(store, parse_config({"name": "x", "output": "out", "seeds": [1],
                                              "data": {"synth_format": 2},
                                              "train": {"dropout": 0.0}}))
