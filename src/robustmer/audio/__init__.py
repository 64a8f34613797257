"""Audio input: decoding, downmixing, resampling, peak normalisation and zero trimming."""

from robustmer.audio.load import SAMPLE_RATE, load_audio, normalize_and_trim

__all__ = ["SAMPLE_RATE", "load_audio", "normalize_and_trim"]
