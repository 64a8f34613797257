"""CLI commands of the data stage: ``robustmer data check|synth|voice|features``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import numpy as np
import typer

from robustmer.errors import ConfigError

data_app = typer.Typer(name="data", help="Check, synthesise and featurise datasets.",
                       no_args_is_help=True)


@data_app.command("check")
def check(
    root: Path = typer.Argument(..., help="Dataset: a manifest (CSV, dataset.yaml, or a folder "
                                "with one) or a Soundtracks folder (Set1/ + "
                                "mean_ratings_set1.csv)."),
    midlevel: Path | None = typer.Option(None, "--midlevel",
                                         help="Mid-level folder (Soundtracks layout; default: "
                                         "ROOT/midlevel)."),
    split_seed: int = typer.Option(0, "--split-seed", help="The seed of the split a study "
                                   "would draw (for the split-size warnings)."),
) -> None:
    """List every problem of a dataset (decoding all audio); exit 1 if there is any. Also says
    what the data names (targets and their scale, classes, concepts) and warns about what a
    study could not score (a constant target, a tiny validation or test split)."""
    from robustmer.data import check_dataset, dataset_warnings, load_dataset

    problems = check_dataset(root, midlevel)
    if problems:
        for problem in problems:
            typer.echo(str(problem))
        typer.secho(f"{len(problems)} problem(s) in {root}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    table = load_dataset(root, midlevel)
    n_concepts = sum(table.has_concepts(i) for i in table.ids)
    units = table.target_info.get("units", "as given")
    typer.echo(f"OK: {len(table)} clips, all audio decodes ({root})")
    typer.echo(f"  targets ({len(table.target_names)}): {', '.join(table.target_names) or '-'}"
               f" ({units})")
    typer.echo(f"  classes ({len(table.classes)}): {', '.join(table.classes) or '-'}")
    typer.echo(f"  concepts ({len(table.concept_names)}): "
               f"{', '.join(table.concept_names) or '-'}; {n_concepts} clips rated on all")
    for warning in dataset_warnings(root, split_seed):
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW)


@data_app.command("synth")
def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write the synthetic dataset to."),
    clips: int = typer.Option(120, "--clips", help="Number of clips."),
    seed: int = typer.Option(0, "--seed", help="Random seed (fixes every byte written)."),
    format_version: int | None = typer.Option(
        None, "--format-version", help="Generator version (default: the newest, 3); 2 has no "
        "concept cues (what configs/embedded.yaml was run on)."),
) -> None:
    """Write the synthetic concept dataset (Soundtracks + Mid-level formats)."""
    from robustmer.data.synth import FORMAT_VERSION, synthesize

    version = FORMAT_VERSION if format_version is None else format_version
    info = synthesize(out, clips=clips, seed=seed, version=version)
    typer.echo(f"wrote {info.clips} clips to {info.root}")


@data_app.command("voice")
def voice(
    out: Path = typer.Option(..., "--out", help="Folder to write the voice dataset to."),
    clips: int = typer.Option(120, "--clips", help="Number of clips (1-999)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (fixes every byte written)."),
    duration: float = typer.Option(12.0, "--duration", help="Seconds per clip (>= 4)."),
    p_voice: float = typer.Option(0.6, "--p-voice", help="Probability that a clip has voice."),
    p_decoy: float = typer.Option(0.6, "--p-decoy", help="Probability that a clip has the "
                                  "instrumental decoy (a plucked lead that is not a voice)."),
    snr_low: float = typer.Option(-12.0, "--snr-low", help="Lowest voice SNR in dB."),
    snr_high: float = typer.Option(-6.0, "--snr-high", help="Highest voice SNR in dB."),
) -> None:
    """Write the voice detection dataset: sung-vowel-like phrases over the embedded
    accompaniment, with per-frame labels and the voice's time-frequency mask (the planted
    ground truth; docs/synthetic-data.md). Train a detector on it with `robustmer train
    --model classifier --data OUT` (50-frame excerpts labelled by their central frame)."""
    from robustmer.data.voice import synthesize_voice

    info = synthesize_voice(out, clips=clips, seed=seed, duration=duration, p_voice=p_voice,
                            p_decoy=p_decoy, snr_db=(snr_low, snr_high))
    how = "reused the complete folder" if info.reused else f"wrote {info.clips} clips"
    typer.echo(f"{how}: {info.root} ({info.seconds:.1f} s)")


class PackDtype(StrEnum):
    """How a feature pack stores the spectrograms."""

    float32 = "float32"
    float16 = "float16"


@data_app.command("features")
def features(
    root: Path = typer.Argument(..., help="Dataset folder."),
    cache: Path | None = typer.Option(None, "--cache",
                                      help="Cache folder (default: $ROBUSTMER_CACHE or "
                                      "~/.cache/robustmer)."),
    pack: Path | None = typer.Option(None, "--pack",
                                     help="Also write a feature pack (spectrograms, table, "
                                     "split; no audio) to this file; see docs/packs.md."),
    dtype: PackDtype = typer.Option(PackDtype.float32, "--dtype",
                                    help="Storage of the pack's spectrograms (float16 halves "
                                    "the size; its content id differs from the audio's)."),
    split: Path | None = typer.Option(None, "--split",
                                      help="Split JSON to put in the pack (default: the seeded "
                                      "split --split-seed that train and study make)."),
    split_seed: int = typer.Option(0, "--split-seed", help="Seed of the pack's split."),
    midlevel: Path | None = typer.Option(None, "--midlevel",
                                         help="Mid-level folder (default: ROOT/midlevel)."),
) -> None:
    """Compute (or read from the cache) the spectrograms of every clip and summarise them;
    with --pack, also write them with the table and the split to a feature pack."""
    from robustmer.data import FeatureCache, load_dataset

    if pack is None and (split is not None or midlevel is not None
                         or dtype != PackDtype.float32):
        raise ConfigError("--split, --midlevel and --dtype describe a feature pack; add "
                          "--pack FILE")
    table = load_dataset(root, midlevel)
    feature_cache = FeatureCache(cache)
    specs, stats = feature_cache.featurize(table.audio_paths)
    frames = np.array([s.shape[0] for s in specs.values()])
    total = sum(s.size for s in specs.values())
    mean = sum(float(s.sum(dtype=np.float64)) for s in specs.values()) / total
    var = sum(float(((s.astype(np.float64) - mean) ** 2).sum()) for s in specs.values()) / total
    bands = {s.shape[1] for s in specs.values()}
    typer.echo(f"clips: {stats.clips} ({stats.computed} computed, {stats.cached} from cache)")
    typer.echo(f"frames: min {frames.min()}, mean {frames.mean():.1f}, max {frames.max()}; "
               f"bands: {sorted(bands)}")
    typer.echo(f"values: mean {mean:.4f}, std {np.sqrt(var):.4f} (all clips)")
    typer.echo(f"time: {stats.seconds:.2f} s total, {stats.seconds / max(stats.clips, 1):.3f} "
               "s per clip")
    typer.echo(f"cache: {feature_cache.directory}")
    if pack is not None:
        from robustmer.data.pack import make_pack

        info = make_pack(root, pack, dtype=dtype.value, cache_dir=cache, split_path=split,
                         split_seed=split_seed, midlevel_root=midlevel, progress=False)
        typer.echo(f"pack: {info.path} ({info.bytes / 2**20:.1f} MiB, {info.dtype}, "
                   f"{info.clips} clips, content id {info.content_id}, split {info.split_id}, "
                   f"front end {info.frontend_key}) in {info.seconds:.2f} s")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""
    app.add_typer(data_app, name="data")
