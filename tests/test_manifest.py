"""Your own data: a CSV manifest (and dataset.yaml) read by the one reader Soundtracks also goes
through; names come from the data; bad manifests are named by file, line and column."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from robustmer.cli import app
from robustmer.data import check_dataset, dataset_warnings, load_dataset, prepare_data
from robustmer.errors import ConfigError, DatasetError, DatasetWarning

SR = 22050


def _wav(path: Path, seed: int, seconds: float = 1.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(int(SR * seconds))).astype(np.float32), SR)


def write_manifest(root: Path, rows: list[list[str]], header: str = "file,arousal,valence",
                   n_audio: int | None = None, spec: str | None = None) -> Path:
    """``root/audio/c<i>.wav`` for the first ``n_audio`` rows and ``root/clips.csv``."""
    n = len(rows) if n_audio is None else n_audio
    for i in range(n):
        _wav(root / "audio" / f"c{i}.wav", i)
    lines = [header] + [",".join(r) for r in rows]
    (root / "clips.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if spec is not None:
        (root / "dataset.yaml").write_text(spec, encoding="utf-8")
    return root / "clips.csv"


def rows_for(n: int) -> list[list[str]]:
    g = np.random.default_rng(0)
    return [[f"audio/c{i}.wav", f"{g.uniform(1, 9):.2f}", f"{g.uniform(1, 9):.2f}"]
            for i in range(n)]


def test_manifest_names_come_from_the_data(tmp_path: Path) -> None:
    csv = write_manifest(tmp_path, rows_for(6))
    table = load_dataset(csv)
    assert table.target_names == ("arousal", "valence")
    assert table.ids == [f"c{i}" for i in range(6)]
    assert table.concept_names == () and table.classes == []
    assert table.target_info["divisor"] == 1.0  # values as given: the 1-9 scale stays
    np.testing.assert_allclose(table.targets.to_numpy(),
                               np.array([[float(v) for v in r[1:]] for r in rows_for(6)]))
    assert check_dataset(csv) == []
    # the folder form and a dataset.yaml give the same table
    write_manifest(tmp_path, rows_for(6), spec="manifest: clips.csv\nscale: [1, 9]\n")
    again = load_dataset(tmp_path)
    assert again.target_names == table.target_names and again.target_info["scale"] == [1, 9]


def test_yaml_roles_label_concepts_split_and_ids(tmp_path: Path) -> None:
    rows = [[f"audio/c{i}.wav", f"clip-{i}", f"{i}", "happy" if i % 2 else "sad",
             f"{0.1 * i:.1f}", ["train", "train", "train", "val", "test", "test"][i],
             "ignored"] for i in range(6)]
    write_manifest(tmp_path, rows, header="path,name,energy,mood,brightness,part,notes",
                   spec="manifest: clips.csv\nfile: path\nid: name\ntargets: [energy]\n"
                        "label: mood\n"
                        "concepts: [brightness]\nsplit: part\n")
    table = load_dataset(tmp_path / "dataset.yaml")
    assert table.ids[0] == "clip-0" and table.target_names == ("energy",)
    assert table.concept_names == ("brightness",) and table.classes == ["happy", "sad"]
    assert table.split_column is not None and table.split_column["clip-3"] == "val"
    data = prepare_data(tmp_path / "dataset.yaml", cache_dir=tmp_path / "cache",
                        progress=False)
    assert data.split.val == ("clip-3",) and data.split.test == ("clip-4", "clip-5")
    desc = data.to_dict()
    assert desc["targets"] == ["energy"] and desc["classes"] == ["happy", "sad"]
    item = data.dataset("train")[0]
    assert item["targets"].shape == (1,) and item["concepts"].shape == (1,)
    wave = data.wave_dataset("train", sample_rate=16000, seconds=0.5)[0]
    assert wave["x"].shape == (8000,) and wave["targets"].shape == (1,)


@pytest.mark.parametrize(("edit", "where", "message"), [
    (lambda r: r[2].__setitem__(0, "audio/missing.wav"), "line 4", "no such audio file"),
    (lambda r: r[1].__setitem__(1, "high"), "line 3", "arousal = 'high' is not a number"),
    (lambda r: r[3].__setitem__(0, r[0][0]), "line 5", "duplicate clip id 'c0'"),
])
def test_bad_rows_are_named_by_file_line_and_column(tmp_path: Path, edit, where: str,
                                                     message: str) -> None:
    rows = rows_for(5)
    edit(rows)
    csv = write_manifest(tmp_path, rows)
    problems = [str(p) for p in check_dataset(csv, decode=False)]
    assert any(where in p and message in p and "clips.csv" in p for p in problems), problems
    with pytest.raises(DatasetError, match=message):
        load_dataset(csv)


def test_empty_class_and_missing_declared_column(tmp_path: Path) -> None:
    rows = [[f"audio/c{i}.wav", "a" if i else ""] for i in range(4)]
    write_manifest(tmp_path, rows, header="file,label")
    with pytest.raises(DatasetError, match=r"line 2: empty class label \(column 'label'\)"):
        load_dataset(tmp_path / "clips.csv")
    write_manifest(tmp_path, rows_for(4), spec="targets: [arousal, dominance]\n"
                                                "manifest: clips.csv\n")
    with pytest.raises(DatasetError, match=r"missing column\(s\) 'dominance' \(targets\)"):
        load_dataset(tmp_path)
    with pytest.raises(ConfigError, match="unknown key"):
        (tmp_path / "dataset.yaml").write_text("tragets: [arousal]\n")
        load_dataset(tmp_path)


def test_scale_split_values_and_warnings(tmp_path: Path) -> None:
    rows = rows_for(5)
    rows[2][2] = "12"
    write_manifest(tmp_path, rows, spec="manifest: clips.csv\nscale: [1, 9]\n")
    with pytest.raises(DatasetError, match=r"valence = 12 is outside the rating scale \[1, 9\]"):
        load_dataset(tmp_path)
    rows = rows_for(5)
    for r in rows:
        r[2] = "5"  # a constant target
    write_manifest(tmp_path, rows, spec="manifest: clips.csv\n")
    found = [(w.kind, str(w)) for w in dataset_warnings(tmp_path)]
    assert any(k == "constant_target" and "valence" in t for k, t in found), found
    # 5 clips split 80/10/10 by seed: 4 / 0 / 1
    assert any(k == "small_split" and "the val split has 0 clip(s)" in t for k, t in found)
    assert any(k == "small_split" and "the test split has 1 clip(s)" in t for k, t in found)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        prepare_data(tmp_path, cache_dir=tmp_path / "cache", progress=False)
    assert any(issubclass(w.category, DatasetWarning) and "too few to score" in str(w.message)
               for w in seen)


def test_data_check_cli_on_a_manifest(tmp_path: Path) -> None:
    csv = write_manifest(tmp_path, rows_for(12))
    res = CliRunner().invoke(app, ["data", "check", str(csv)])
    assert res.exit_code == 0, res.output
    assert "12 clips" in res.output and "arousal, valence" in res.output
    rows = rows_for(12)
    rows[4][1] = "x"
    write_manifest(tmp_path, rows)
    res = CliRunner().invoke(app, ["data", "check", str(csv)])
    assert res.exit_code == 1 and "line 6" in res.output and "arousal" in res.output


def test_a_manifest_packs_with_its_names_and_split(tmp_path: Path) -> None:
    """``data features --pack`` on a manifest keeps its target names, scale and split column."""
    from robustmer.data.pack import make_pack

    parts = ["train"] * 6 + ["val", "val", "test", "test"]
    rows = [[*r, parts[i]] for i, r in enumerate(rows_for(10))]
    write_manifest(tmp_path, rows, header="file,arousal,valence,split",
                   spec="manifest: clips.csv\nscale: [1, 9]\n")
    make_pack(tmp_path, tmp_path / "p.pack", cache_dir=tmp_path / "cache")
    packed = prepare_data(tmp_path / "p.pack", split_seed=0)
    audio = prepare_data(tmp_path, cache_dir=tmp_path / "cache", progress=False)
    assert packed.table.target_names == ("arousal", "valence")
    assert packed.table.target_info["scale"] == [1.0, 9.0]
    assert packed.split.split_id == audio.split.split_id and packed.split.test == (
        "c8", "c9")
    assert packed.content_id == audio.content_id
