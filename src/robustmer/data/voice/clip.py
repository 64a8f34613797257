"""One clip of the voice dataset: the concept accompaniment, the decoy and the voice mixed at
their drawn levels, with the frame labels and the planted time-frequency masks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from robustmer.data.synth import SAMPLE_RATE, render_clip
from robustmer.data.voice.labels import frame_centres, frame_labels, span_frames
from robustmer.data.voice.parameters import (
    ACCOMPANIMENT_VERSION,
    DEFAULT_MASK_DB,
    DEFAULT_P_DECOY,
    DEFAULT_P_VOICE,
    DEFAULT_SNR_DB,
)
from robustmer.data.voice.render import draw_uniform, plan_spans, render_voice
from robustmer.errors import ConfigError
from robustmer.features import FrontEndConfig, LogFilteredSpectrogram


@dataclass(frozen=True)
class VoiceClip:
    """One clip of the voice dataset: the mix and its parts (as mixed, float32; ``accompaniment``
    includes the decoy), labels and the ground truth (see :data:`LABEL_RULES`). ``spans`` and
    ``decoy_spans`` in samples, ``span_frames`` in frames (``[start, end)``), ``f0`` the voice's
    f0 at each frame centre (0 where unvoiced)."""

    audio: np.ndarray
    voice: np.ndarray
    accompaniment: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    dominant: np.ndarray
    f0: np.ndarray
    spans: np.ndarray
    span_frames: np.ndarray
    span_f0: np.ndarray
    snr_db: float
    decoy_spans: np.ndarray
    concepts: dict[str, float]
    sample_rate: int = SAMPLE_RATE



def _filtered(audio: np.ndarray, frontend: LogFilteredSpectrogram) -> np.ndarray:
    """The front end's filtered magnitude (before the log), ``(T, bands)`` float64."""
    with torch.no_grad():
        return frontend.filtered(torch.from_numpy(audio.astype(np.float64))).numpy()


def _level(signal_: np.ndarray, reference: np.ndarray, spans: np.ndarray,
           snr: float) -> np.ndarray:
    """``signal_`` scaled so its power over ``spans`` is ``snr`` dB above ``reference``'s."""
    on = np.zeros(signal_.size, dtype=bool)
    for s0, s1 in spans:
        on[s0:s1] = True
    gain = np.sqrt(np.mean(reference[on].astype(np.float64) ** 2)
                   / np.mean(signal_[on].astype(np.float64) ** 2) * 10 ** (snr / 10))
    return (signal_ * np.float32(gain)).astype(np.float32)


def render_voice_clip(concepts: np.ndarray, *, duration: float = 12.0,
                      seed: tuple[int, int] = (0, 0), p_voice: float = DEFAULT_P_VOICE,
                      p_decoy: float = DEFAULT_P_DECOY,
                      snr_db: tuple[float, float] = DEFAULT_SNR_DB,
                      mask_db: float = DEFAULT_MASK_DB,
                      config: FrontEndConfig | None = None) -> VoiceClip:
    """One clip: the accompaniment of ``concepts`` (7 values in [0, 1]), the decoy instrument
    (with probability ``p_decoy``) and the voice (with probability ``p_voice``).

    ``seed = (dataset seed, clip index k)``: the concept accompaniment is rendered with the
    concept dataset's seed ``(seed, 1000 + k)``; the voice's spans and SNR draw from
    ``(seed, 3000 + k)``, its sound from ``(seed, 4000 + k)``, the decoy's from ``(seed, 5000 +
    k)`` and ``(seed, 6000 + k)``. The decoy's level is set against the concept accompaniment,
    the voice's against the accompaniment with the decoy (everything that is not voice, which
    :attr:`VoiceClip.accompaniment` holds). See :data:`LABEL_RULES` for labels and masks.
    """
    cfg = config if config is not None else FrontEndConfig(sample_rate=SAMPLE_RATE)
    if cfg.sample_rate != SAMPLE_RATE:
        raise ConfigError(f"config.sample_rate: expected {SAMPLE_RATE}, got {cfg.sample_rate}")
    base, k = (int(s) for s in seed)
    acc = render_clip(concepts, duration=duration, seed=(base, 1000 + k),
                      version=ACCOMPANIMENT_VERSION)
    n = acc.audio.size
    rng = np.random.default_rng([base, 3000 + k])
    spans = plan_spans(rng, duration, p_voice)
    snr = float(draw_uniform(rng, snr_db))
    track = render_voice(n, spans, tonic_pc=acc.score.tonic_pc, seed=[base, 4000 + k])
    decoy_rng = np.random.default_rng([base, 5000 + k])
    decoy_spans = plan_spans(decoy_rng, duration, p_decoy)
    decoy_snr = float(draw_uniform(decoy_rng, snr_db))
    accompaniment = acc.audio.astype(np.float32)
    if decoy_spans.size:
        decoy = render_voice(n, decoy_spans, tonic_pc=acc.score.tonic_pc, seed=[base, 6000 + k],
                             decoy=True)
        accompaniment = accompaniment + _level(decoy.audio, accompaniment, decoy_spans,
                                               decoy_snr)
    voice = np.zeros(n, dtype=np.float32)
    if spans.size:
        voice = _level(track.audio, accompaniment, spans, snr)
    if spans.size or decoy_spans.size:
        # keep the concept accompaniment's peak level (the loaders peak-normalise anyway)
        scale = np.float32(np.abs(acc.audio).max() / np.abs(accompaniment + voice).max())
        voice, accompaniment = voice * scale, accompaniment * scale
    mix = (accompaniment + voice).astype(np.float32)
    labels = frame_labels(spans, n, cfg)
    frames = span_frames(spans, n, cfg)
    frontend = LogFilteredSpectrogram(cfg, dtype=torch.float64)
    mask = np.zeros((labels.size, frontend.num_bands), dtype=bool)
    dominant = mask.copy()
    if spans.size:
        v_mag = _filtered(voice, frontend)
        a_mag = _filtered(accompaniment, frontend)
        mask = labels[:, None] & (v_mag >= v_mag.max() * 10 ** (-float(mask_db) / 20))
        dominant = mask & (v_mag > a_mag)
    centres = np.minimum(frame_centres(n, cfg), n - 1)
    f0 = np.where(labels, track.f0[centres], 0.0).astype(np.float32)
    return VoiceClip(audio=mix, voice=voice, accompaniment=accompaniment, labels=labels,
                     mask=mask, dominant=dominant, f0=f0, spans=spans, span_frames=frames,
                     span_f0=track.span_f0, snr_db=snr if spans.size else float("nan"),
                     decoy_spans=decoy_spans, concepts=acc.concepts)
