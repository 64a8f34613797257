"""The embedded concept dataset: music-like clips rendered from seven known concept values.

Real Mid-level concept annotations are not redistributable, so the concept-bottleneck models are
exercised on this synthetic dataset instead. Every clip is rendered with numpy from seven concept
values in [0, 1] (drawn per clip from a seeded RNG) that really change what is heard; concept
ratings are those values on the 1-10 scale plus noise, and the 8 emotion ratings are a fixed,
documented linear map of the concepts plus noise (``generating_map.json`` records it, so a later
check can test whether a concept-bottleneck model recovers it). The files follow the on-disk
formats of Soundtracks Set 1 and the Mid-level dataset exactly, so the same loaders read both.
See docs/synthetic-data.md for the rendering rules, the emotion map and the label rule.

Three modules, one job each: :mod:`~robustmer.data.synth.concepts` (concept values, the emotion
map, the rating noise and the label rule), :mod:`~robustmer.data.synth.render` (the score and
its audio) and :mod:`~robustmer.data.synth.dataset` (the dataset folder). Every public name is
importable from here.

Examples:
    >>> import tempfile
    >>> from robustmer.data.synth import draw_concepts, render_clip, synthesize
    >>> clip = render_clip(draw_concepts(1, seed=0)[0], duration=1.0, seed=0)
    >>> clip.audio.shape, clip.sample_rate, float(abs(clip.audio).max()) <= 1.0
    ((22050,), 22050, True)
    >>> info = synthesize(tempfile.mkdtemp() + "/syn", clips=10, duration=10.5,
    ...                   audio_format="wav")  # a few seconds
    >>> info.clips, sorted(p.name for p in info.root.iterdir())
    (10, ['README.txt', 'Set1', 'generating_map.json', 'mean_ratings_set1.csv', 'midlevel'])
"""

from robustmer.audio import SAMPLE_RATE
from robustmer.data.synth.concepts import (
    AUDIO_PARAMETERS,
    CLASSES,
    CONCEPT_CUES,
    CONCEPT_NOISE_SD,
    EMOTION_BIASES,
    EMOTION_NOISE_SD,
    EMOTION_WEIGHTS,
    ENERGY_CUES,
    LABEL_MEANS,
    LABEL_RULE,
    LABEL_SDS,
    MODE_CUES,
    SURPRISE_OFFSET,
    Annotations,
    annotate,
    audio_parameter,
    concept_values,
    cue,
    draw_concepts,
    emotion_map,
    label_from_emotions,
)
from robustmer.data.synth.dataset import (
    AUDIO_FORMATS,
    MIN_CLIPS,
    MIN_DURATION,
    SynthInfo,
    generating_map,
    synthesize,
)
from robustmer.data.synth.render import (
    FORMAT_VERSION,
    FORMAT_VERSIONS,
    VOICES,
    Score,
    SynthClip,
    check_version,
    render_clip,
)

__all__ = [
    "AUDIO_FORMATS", "AUDIO_PARAMETERS", "CLASSES", "CONCEPT_CUES", "CONCEPT_NOISE_SD",
    "EMOTION_BIASES", "EMOTION_NOISE_SD", "EMOTION_WEIGHTS", "ENERGY_CUES", "FORMAT_VERSION",
    "FORMAT_VERSIONS", "LABEL_MEANS", "LABEL_RULE", "LABEL_SDS", "MIN_CLIPS", "MIN_DURATION",
    "MODE_CUES", "SAMPLE_RATE", "SURPRISE_OFFSET", "VOICES", "Annotations", "Score",
    "SynthClip", "SynthInfo", "annotate", "audio_parameter", "check_version", "concept_values",
    "cue", "draw_concepts", "emotion_map", "generating_map", "label_from_emotions",
    "render_clip", "synthesize",
]
