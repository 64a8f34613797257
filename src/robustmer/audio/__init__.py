"""Audio input and output: decoding, downmixing, resampling, peak normalisation and zero
trimming; float WAV writing. :data:`SAMPLE_RATE` (22 050 Hz, the study's) is the one sample rate
of the package: the front end's default, the synthesiser's and the written WAVs'."""

from robustmer.audio.load import SAMPLE_RATE, load_audio, normalize_and_trim
from robustmer.audio.write import write_wav

__all__ = ["SAMPLE_RATE", "load_audio", "normalize_and_trim", "write_wav"]
