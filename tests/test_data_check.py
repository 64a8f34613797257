"""``check_dataset`` lists every problem (with file and line) and ``robustmer data check``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from typer.testing import CliRunner

from robustmer.cli import app
from robustmer.data import check_dataset
from test_data_loaders import ratings_rows, write_clip, write_dataset, write_midlevel, write_ratings

runner = CliRunner()


def test_clean_dataset_has_no_problems(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "ds", n=3, seconds=0.5)
    write_midlevel(root / "midlevel", {"001": [3] * 7})
    assert check_dataset(root) == []


def test_every_problem_is_listed(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "ds", n=6, seconds=0.5)
    rows = ratings_rows(6)
    rows[0][1] = "x"          # line 2: non-numeric valence
    rows[1][2] = "12"         # line 3: energy out of range
    rows[4][0] = "004"        # line 6: duplicate of line 5 (and 005.wav becomes unrated)
    write_ratings(root, rows)
    (root / "Set1" / "006.wav").unlink()                       # line 7: no audio
    (root / "Set1" / "003.wav").write_bytes(b"not audio at all")  # undecodable
    sf.write(root / "Set1" / "002.wav", np.zeros(1000, np.float32), 22050)  # silent
    write_midlevel(root / "midlevel", {"001": [11] + [5] * 6})  # concept out of range
    csv = root / "mean_ratings_set1.csv"
    found = {(p.kind, p.file.name, p.line) for p in check_dataset(root)}
    assert found == {
        ("non_numeric", csv.name, 2),
        ("out_of_range", csv.name, 3),
        ("duplicate_id", csv.name, 6),
        ("missing_audio", csv.name, 7),
        ("unrated_audio", "005.wav", None),
        ("undecodable", "003.wav", None),
        ("undecodable", "002.wav", None),
        ("out_of_range", "annotations.csv", 3),
    }
    by_file = {p.file.name: str(p) for p in check_dataset(root) if p.kind == "undecodable"}
    assert "silent" in by_file["002.wav"] and str(root / "Set1" / "002.wav") in by_file["002.wav"]


def test_decode_can_be_skipped(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "ds", n=2, seconds=0.5)
    (root / "Set1" / "001.wav").write_bytes(b"junk")
    assert check_dataset(root, decode=False) == []
    assert [p.kind for p in check_dataset(root)] == ["undecodable"]


def test_explicit_midlevel_root_is_checked(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "ds", n=2, seconds=0.5)
    ml = write_midlevel(tmp_path / "ml", {"001": [5] * 7}, extra_annot=["3,bad,1,1,1,1,1,1"])
    problems = check_dataset(root, ml, decode=False)
    assert [(p.kind, p.file, p.line) for p in problems] == [
        ("non_numeric", ml / "annotations.csv", 4)]


def test_cli_check_ok(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "ds", n=3, seconds=0.5)
    write_midlevel(root / "midlevel", {"002": [3] * 7})
    result = runner.invoke(app, ["data", "check", str(root)])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("OK: 3 clips")
    assert "1 clips rated on all" in result.output and "valence, energy" in result.output
    assert "ratings divided by 10" in result.output


def test_cli_check_lists_problems_and_fails(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "ds", n=3, seconds=0.5)
    write_clip(root / "Set1" / "009.wav", 0.5)
    (root / "Set1" / "001.wav").write_bytes(b"junk")
    result = runner.invoke(app, ["data", "check", str(root)])
    assert result.exit_code == 1
    assert str(root / "Set1" / "009.wav") in result.output
    assert str(root / "Set1" / "001.wav") in result.output
    assert "2 problem(s)" in result.output


def test_cli_check_with_midlevel_option(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "ds", n=2, seconds=0.5)
    ml = write_midlevel(tmp_path / "ml", {"001": [0] * 7})
    result = runner.invoke(app, ["data", "check", str(root), "--midlevel", str(ml)])
    assert result.exit_code == 1
    assert f"{ml / 'annotations.csv'}, line 3" in result.output
