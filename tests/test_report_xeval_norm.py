"""The explainer-eval page names the norm its attack used (issue 22): explainer-eval's default
attack is L2 targeted PGD, so the page reads the norm from the folder's config.yaml and says
L2 (‖δ‖₂ ≤ ε) or L∞ (‖δ‖∞ ≤ ε) instead of assuming L∞. The folders are written by
``evaluate_explainers`` itself (a tiny linear classifier, the baselines only)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from robustmer.attacks import Attack, TargetedPGD
from robustmer.explain.evaluation import DEFAULT_ATTACKS, default_attack, evaluate_explainers
from robustmer.report.explain import attack_html, build_explain_report

T, F = 8, 6
SEG = ((torch.arange(T)[:, None] // 4) * 3 + torch.arange(F)[None, :] // 2).long()


def _folder(tmp_path: Path, attack: Attack) -> Path:
    """An explainer-eval folder of 3 clips attacked by ``attack`` (magnitude / random only)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(T * F, 2))
    items = [{"id": f"c{i}", "x": torch.randn(1, T, F)} for i in range(3)]
    out = tmp_path / "xeval"
    evaluate_explainers(model, items, SEG, {}, out, task="classification", attack=attack,
                        ks=(1, 2), recovery_ks=(1,), n_maps=1)
    return out


def _header(page: str) -> str:
    """The page's first caption: the folder, the task and the attack."""
    match = re.search(r'<h1>.*?</h1>\s*<p class="caption">(.*?)</p>', page, flags=re.S)
    assert match is not None
    return match.group(1)


def test_default_attack_is_l2_and_the_page_says_so(tmp_path: Path) -> None:
    assert DEFAULT_ATTACKS["classification"]["norm"] == "l2"
    folder = _folder(tmp_path, default_attack("classification", max_iters=5))
    config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    assert config["attack"]["norm"] == "l2"
    page = build_explain_report(folder).read_text(encoding="utf-8")
    header = _header(page)
    assert "L2 ball ‖δ‖₂ ≤ ε" in header and f"ε {config['attack']['eps']}" in header
    assert "L∞" not in page and "‖δ‖∞" not in page


def test_an_linf_attack_is_called_linf(tmp_path: Path) -> None:
    folder = _folder(tmp_path, TargetedPGD(eps=0.5, eta=0.1, max_iters=5, norm="linf"))
    header = _header(build_explain_report(folder).read_text(encoding="utf-8"))
    assert "L∞ ball ‖δ‖∞ ≤ ε" in header and "ε 0.5" in header
    assert "L2" not in header and "‖δ‖₂" not in header


@pytest.mark.parametrize(("attack", "says", "never"), [
    ({"attack": "bim", "eps": 1, "eta": 0.1, "max_iters": 3, "norm": "L2"}, "L2 ball", "L∞"),
    ({"attack": "bim", "eps": 1, "eta": 0.1, "max_iters": 3}, "norm not recorded", "ball"),
    ({"attack": "x", "norm": "<l1>"}, "norm &lt;l1&gt;", "<l1>"),
])
def test_attack_text_for_other_configs(attack: dict[str, object], says: str, never: str
                                       ) -> None:
    text = attack_html(attack)
    assert says in text and never not in text
