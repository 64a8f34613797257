"""Front-end speed on real clips: decode, resample, spectrogram; torch module vs numpy float64.

Usage: ``python benchmarks/bench_frontend.py [--clips N] [--threads T] [--out PATH]``

For N real Soundtracks clips (../shared, or $ROBUSTMER_SHARED) it times, per clip, soundfile
decoding, downmix + soxr resampling, and the spectrogram of the decoded waveform by
``LogFilteredSpectrogram`` (float32, no grad) and, as the in-run baseline, by a float64 numpy
re-implementation of madmom's steps (FACTS.md §2-6: gather, np.hanning, np.fft.fft, complex64,
|.|, filterbank, log10(1 + x)). Writes JSON (atomically) with seconds per clip, the speed ratio
and the largest difference between the two spectrograms.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from robustmer.audio import SAMPLE_RATE, normalize_and_trim
from robustmer.audio.load import RESAMPLE_QUALITY, quantize_pcm16, to_float32
from robustmer.features import FrontEndConfig, LogFilteredSpectrogram
from robustmer.io import run_meta, write_json

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ROBUSTMER_SHARED", REPO.parent / "shared"))


def numpy_reference(wave: np.ndarray, config: FrontEndConfig, fb: np.ndarray) -> np.ndarray:
    """madmom's LogarithmicFilteredSpectrogram in numpy, FFT in float64 (the baseline)."""
    starts = config.frame_starts(len(wave))
    padded = np.concatenate([wave, np.zeros(int(starts[-1]) + config.frame_size - len(wave),
                                            wave.dtype)])
    frames = padded[starts[:, None] + np.arange(config.frame_size)]
    stft = np.fft.fft(frames * np.hanning(config.frame_size), axis=-1)
    mag = np.abs(stft[:, : config.num_fft_bins].astype(np.complex64))
    filt = mag @ fb
    return np.log10(filt + np.float32(1))


def main() -> None:
    """Parse arguments, time every stage on N clips, write the JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20, help="number of real clips (1-360)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/frontend.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    files = sorted((SHARED / "data" / "soundtracks" / "Set1").glob("*.mp3"))[: args.clips]
    if not files:
        raise SystemExit(f"no clips found under {SHARED}/data/soundtracks/Set1")
    config = FrontEndConfig()
    module = LogFilteredSpectrogram(config).eval()
    fb = config.filterbank()
    t = {"decode": 0.0, "resample": 0.0, "spectrogram_torch": 0.0, "spectrogram_numpy": 0.0}
    max_diff, audio_seconds = 0.0, 0.0
    with torch.no_grad():
        module(torch.zeros(SAMPLE_RATE))  # warm-up (first-call allocations)
        for path in files:
            t0 = time.perf_counter()
            data, rate = sf.read(str(path), dtype="float32", always_2d=True)
            t1 = time.perf_counter()
            mono = soxr.resample(data.mean(axis=1), rate, SAMPLE_RATE, quality=RESAMPLE_QUALITY)
            t2 = time.perf_counter()
            wave = to_float32(normalize_and_trim(quantize_pcm16(mono)))
            t3 = time.perf_counter()
            spec = module(torch.from_numpy(wave)).numpy()
            t4 = time.perf_counter()
            ref = numpy_reference(wave, config, fb)
            t5 = time.perf_counter()
            t["decode"] += t1 - t0
            t["resample"] += t2 - t1
            t["spectrogram_torch"] += t4 - t3
            t["spectrogram_numpy"] += t5 - t4
            max_diff = max(max_diff, float(np.abs(spec - ref).max()))
            audio_seconds += len(wave) / SAMPLE_RATE
    n = len(files)
    result = {
        "clips": n,
        "audio_seconds_per_clip": audio_seconds / n,
        "seconds_per_clip": {k: v / n for k, v in t.items()},
        "speedup_torch_vs_numpy_float64": t["spectrogram_numpy"] / t["spectrogram_torch"],
        "max_abs_diff_torch_vs_numpy": max_diff,
        "torch_threads": torch.get_num_threads(),
        "frontend": config.to_dict(),
        "meta": run_meta(benchmark="frontend"),
    }
    write_json(args.out, result)
    per = result["seconds_per_clip"]
    print(f"{n} clips ({result['audio_seconds_per_clip']:.1f} s audio each): "
          + ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in per.items())
          + f"; torch/numpy speed-up x{result['speedup_torch_vs_numpy_float64']:.2f}, "
          f"max|diff| {max_diff:.1e} -> {args.out}")


if __name__ == "__main__":
    main()
