"""Dataset formats (a user manifest; Soundtracks and Mid-level as instances of it), splits, the
feature cache and torch datasets."""

from robustmer.data.cache import FeatureCache, FeatureStats, default_cache_dir
from robustmer.data.check import check_dataset, dataset_warnings
from robustmer.data.manifest import ManifestSpec, load_manifest, manifest_spec
from robustmer.data.midlevel import MidLevel
from robustmer.data.prepare import PreparedData, prepare_data
from robustmer.data.soundtracks import load_dataset, soundtracks_spec
from robustmer.data.split import Split, make_split
from robustmer.data.synth import SynthInfo, synthesize
from robustmer.data.table import ClipTable, Problem, normalise_clip_id
from robustmer.data.torchdata import ExcerptDataset, WaveExcerptDataset

__all__ = [
    "ClipTable",
    "ExcerptDataset",
    "FeatureCache",
    "FeatureStats",
    "ManifestSpec",
    "MidLevel",
    "PreparedData",
    "Problem",
    "Split",
    "SynthInfo",
    "WaveExcerptDataset",
    "check_dataset",
    "dataset_warnings",
    "default_cache_dir",
    "load_dataset",
    "load_manifest",
    "make_split",
    "manifest_spec",
    "normalise_clip_id",
    "prepare_data",
    "soundtracks_spec",
    "synthesize",
]
