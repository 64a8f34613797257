"""robustmer: robustness and interpretability of music emotion recognition models.

The package reads like the pipeline it runs, one sub-package per stage (see docs/ARCHITECTURE.md):
audio -> features -> data -> models -> train / attacks / explain -> evaluate -> study -> report.
"""

__version__ = "0.1.0"

EMOTIONS: tuple[str, ...] = (
    "valence", "energy", "tension", "anger", "fear", "happy", "sad", "tender",
)
"""The 8 Soundtracks emotion ratings, in the order every model outputs them."""

CONCEPTS: tuple[str, ...] = (
    "melodiousness", "articulation", "rhythm_complexity", "rhythm_stability",
    "dissonance", "tonal_stability", "minorness",
)
"""The 7 mid-level perceptual concepts, in the order every bottleneck outputs them."""
