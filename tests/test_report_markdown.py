"""The Markdown summary (`robustmer report --markdown`): every setting's Table 1 and tests, the
curves' areas, and numbers equal to the ones the statistics functions compute."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from robustmer.cli import app
from robustmer.errors import ConfigError
from robustmer.evaluate.attack_settings import select_setting, settings
from robustmer.evaluate.paired_tests import compare_by_setting
from robustmer.evaluate.planned import planned_family, store_comparisons
from robustmer.evaluate.study_tables import table1
from robustmer.report.markdown import markdown_summary, md_table
from test_budgets import BUDGETS, budget_clips, write_store


def test_markdown_has_every_setting_and_the_computed_numbers(tmp_path: Path) -> None:
    clips = budget_clips()
    store = write_store(tmp_path / "s", clips)
    text = markdown_summary(store.path)
    runs = store.read_runs()
    for st in settings(clips):
        label = f"## bim eps={st[2]:g} (spectrogram)"
        assert label in text
        t1 = table1(select_setting(runs, st, keep_unset=True), select_setting(clips, st))
        row = t1[t1["model_type"] == "A2E"].iloc[0]
        # mean over seeds [the page's clip-bootstrap interval], N clips beside it
        assert (f"| A2E | 3 | 15 | {row['clean_mean_r_mean']:.3f} [" in text
                and f"{row['delta_mae_mean']:.4f} [{row['delta_mae_lo']:.4f}, "
                    f"{row['delta_mae_hi']:.4f}]" in text)
    comps = compare_by_setting(clips, runs=runs)
    c = comps[0][1][0]
    assert f"t({c.df}) = {c.t:.2f}" in text  # the family's tests pair the clips the same way
    fam = planned_family(clips, runs, store_comparisons({}, ["A2E", "A2M2E"]))
    assert text.count("One family of planned comparisons") == 1
    assert f"Holm's step-down correction over all m = {fam.m}" in text
    assert "## Robustness curves" in text and f"{len(BUDGETS)} budgets" in text
    assert "Checks against" not in text  # no checks.csv in this store


def test_markdown_cli_writes_the_file_and_refuses_a_non_store(tmp_path: Path) -> None:
    clips = budget_clips()
    store = write_store(tmp_path / "s", clips)
    res = CliRunner().invoke(app, ["report", str(store.path), "--markdown"])
    assert res.exit_code == 0, res.output
    assert (store.path / "report.md").read_text().startswith("# Results: s")
    assert not (store.path / "report.html").exists()
    with pytest.raises(ConfigError, match="not a results store"):
        markdown_summary(tmp_path)


def test_md_table_escapes_pipes() -> None:
    assert md_table(["a"], [["x|y"]]).splitlines()[-1] == "| x\\|y |"


def test_markdown_checks_section_counts_flags(tmp_path: Path) -> None:
    store = write_store(tmp_path / "s", budget_clips())
    rule = "flag if fewer than 0.9 of the clips reach the MSE limit 1"
    rows = [{"run_id": f"A2E-{s}", "model_type": "A2E", "seed": s, "clips": 4,
             "check": "unbounded", "setting": "no eps", "eps": float("nan"), "iters": 200,
             "metric": "fraction_at_limit", "value": v, "reference": 0.9, "status": st,
             "rule": rule} for s, v, st in ((1, 1.0, "pass"), (2, 0.5, "flag"))]
    pd.DataFrame(rows).to_csv(store.path / "checks.csv", index=False)
    text = markdown_summary(store.path)
    line = next(ln for ln in text.splitlines() if ln.startswith("| A2E | unbounded limit"))
    assert "0.7500 ± 0.3536" in line and "**FLAG** (1 of 2)" in line and "| none |" in line
