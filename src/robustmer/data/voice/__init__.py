"""The voice detection dataset: sung-vowel-like phrases over the embedded accompaniment.

An analogue of singing-voice detection (Schlüter's 50-frame excerpt detector) with a planted
ground truth of *where* the voice is, so explanations of a voice detector can be checked against
it (localisation, docs/synthetic-data.md "The voice detection task"). Each clip is the format-3
accompaniment of the concept dataset (:func:`robustmer.data.synth.render_clip`, unchanged, with
the same per-clip concepts and render seed as ``synthesize`` with the same ``seed``) plus, in some
time spans of some clips, a voice-like source:

- a band-limited harmonic source (amplitudes ``h ** -tilt``: a glottal pulse train's roll-off
  after lip radiation) whose f0 follows a note contour in the accompaniment's key (singing range
  about 155-590 Hz, notes glide into each other), with vibrato (5-6 Hz, 0.3-0.7 semitone) that
  grows into every note, and jitter (slow random f0 wobble);
- through the formant filters of a vowel per syllable (F1/F2/F3 from Peterson & Barney's female
  averages, scipy's ``iirpeak`` resonators in parallel), cross-faded between syllables;
- under a syllable-like amplitude envelope (a dip at every syllable boundary, a level per
  syllable, fades at the phrase's ends) that is exactly zero outside the span.

An instrumental decoy (:data:`DECOY_PARAMETERS`) plays in some spans of some clips,
independently of the voice: the same kind of notes and source in the same register, but a
steady pitch, one static timbre and plucked notes. It keeps the task from being solved by band
energies alone (without it, the voice was the only source of harmonics between about 2 and
7 kHz). The voice's level is set per clip by an SNR drawn from ``snr_db`` (voice power over
the power of everything else, both measured over the voiced samples).

Labels and ground truth are computed at the front end's frame rate
(:class:`robustmer.features.FrontEndConfig`, 31.3 fps): a frame is labelled voiced when its
window centre lies inside a span; its ``mask`` holds the bands of the 149-band log-filtered
spectrogram where the voice alone (as mixed) is within ``mask_db`` of its loudest band of the
clip, and ``dominant`` those of them where the voice is also louder than everything else.

Six modules, one job each: :mod:`~robustmer.data.voice.parameters` (the fixed settings and
label rules), :mod:`~robustmer.data.voice.labels` (frame and excerpt labels),
:mod:`~robustmer.data.voice.render` (span plans and the voice or decoy alone),
:mod:`~robustmer.data.voice.clip` (one mixed clip with its labels and planted masks),
:mod:`~robustmer.data.voice.folder` (the folder layout, the deterministic npz writer, reading a
folder back) and :mod:`~robustmer.data.voice.dataset` (:func:`synthesize_voice`). Every public
name is importable from here.
"""

from robustmer.data.voice.clip import VoiceClip, render_voice_clip
from robustmer.data.voice.dataset import VoiceInfo, synthesize_voice, voice_settings
from robustmer.data.voice.folder import (
    AUDIO_DIR,
    CLIP_COLUMNS,
    CLIPS_CSV,
    SETTINGS_JSON,
    SPAN_COLUMNS,
    SPANS_CSV,
    TRUTH_ARRAYS,
    TRUTH_DIR,
    VoiceDataset,
    load_voice_dataset,
    read_truth,
)
from robustmer.data.voice.labels import excerpt_labels, frame_centres, frame_labels, span_frames
from robustmer.data.voice.parameters import (
    ACCOMPANIMENT_VERSION,
    DECOY_PARAMETERS,
    DEFAULT_MASK_DB,
    DEFAULT_P_DECOY,
    DEFAULT_P_VOICE,
    DEFAULT_SNR_DB,
    EXCERPT_RULES,
    LABEL_RULES,
    LABELS,
    MIN_DURATION,
    VOICE_FORMAT_VERSION,
    VOICE_PARAMETERS,
    VOWELS,
)
from robustmer.data.voice.render import VoiceTrack, plan_spans, render_voice

__all__ = [
    "ACCOMPANIMENT_VERSION", "AUDIO_DIR", "CLIPS_CSV", "CLIP_COLUMNS", "DECOY_PARAMETERS",
    "DEFAULT_MASK_DB", "DEFAULT_P_DECOY", "DEFAULT_P_VOICE", "DEFAULT_SNR_DB", "EXCERPT_RULES",
    "LABELS", "LABEL_RULES", "MIN_DURATION", "SETTINGS_JSON", "SPANS_CSV", "SPAN_COLUMNS",
    "TRUTH_ARRAYS", "TRUTH_DIR", "VOICE_FORMAT_VERSION", "VOICE_PARAMETERS", "VOWELS",
    "VoiceClip", "VoiceDataset", "VoiceInfo", "VoiceTrack", "excerpt_labels", "frame_centres",
    "frame_labels", "load_voice_dataset", "plan_spans", "read_truth", "render_voice",
    "render_voice_clip", "span_frames", "synthesize_voice", "voice_settings",
]
