from pathlib import Path

import pytest

from robustmer.errors import ConfigError
from robustmer.study.config import MODEL_TYPES, load_config, parse_config

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "robustmer" / "configs"


def test_shipped_configs_parse() -> None:
    paper = load_config(CONFIGS / "paper.yaml")
    assert paper.seeds == (6, 21, 42, 796, 950, 2025, 2324, 2451, 3100, 7192)
    assert set(paper.models) == set(MODEL_TYPES)
    assert (paper.train.epochs, paper.train.patience, paper.train.lr) == (200, 50, 5e-4)
    (setting,) = paper.attack.settings  # one budget, as the paper
    assert setting.spec.name == "bim" and setting.domain == "spectrogram"
    s = setting.spec.settings
    assert (s["max_iters"], s["eps"], s["eta"], s["stop"]) == (1000, 0.001, 0.002, "corr")
    demo = load_config(CONFIGS / "demo.yaml")
    assert demo.data.root is None and demo.train.width < 1.0
    assert [x.id for x in demo.attack.settings] == ["bim-waveform-eps0.002"]
    repo = Path(__file__).resolve().parents[1] / "configs"
    for name in ("demo.yaml", "paper.yaml"):  # the copies beside the repository say the same
        assert load_config(repo / name) == load_config(CONFIGS / name)


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
