"""Dataset formats (Soundtracks, Mid-level), splits, the feature cache and torch datasets."""

from robustmer.data.cache import FeatureCache, FeatureStats, default_cache_dir
from robustmer.data.check import check_dataset
from robustmer.data.midlevel import MidLevel
from robustmer.data.prepare import PreparedData, prepare_data
from robustmer.data.soundtracks import Soundtracks, load_dataset
from robustmer.data.split import Split, make_split
from robustmer.data.synth import SynthInfo, synthesize
from robustmer.data.table import ClipTable, Problem, normalise_clip_id
from robustmer.data.torchdata import ExcerptDataset

__all__ = [
    "ClipTable",
    "ExcerptDataset",
    "FeatureCache",
    "FeatureStats",
    "MidLevel",
    "PreparedData",
    "Problem",
    "Soundtracks",
    "Split",
    "SynthInfo",
    "check_dataset",
    "default_cache_dir",
    "load_dataset",
    "make_split",
    "normalise_clip_id",
    "prepare_data",
    "synthesize",
]
