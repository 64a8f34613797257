"""The L2I signal path: the front end's STFT -> ``X = log(1 + |STFT|)``, soft masks, and the
way back to audio (the input's phase + overlap-add).

The STFT is the front end's own (``LogFilteredSpectrogram.stft``: frame 2048, madmom's window,
the float hop ``sample_rate / fps``, 22.05 kHz / 31.3 by default), so the frames of ``X`` are
the frames of the model's input.
The inverse is a weighted overlap-add written by hand: ``torch.istft`` needs an integer hop and
would drift by ~0.47 samples per frame against the float-hop frame starts ``int(i * hop)``.
"""

from __future__ import annotations

import torch

from robustmer.features import LogFilteredSpectrogram

EPS = 1e-8


def log_magnitude(frontend: LogFilteredSpectrogram, wave: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(S,)`` waveform -> ``X (T, F)`` = ``log1p(|STFT|)`` on the front end's ``F = 1024``
    bins (Nyquist dropped, as the front end does), and the complex STFT ``(T, F + 1)``."""
    spec = frontend.stft(wave)
    return torch.log1p(spec[..., : frontend.config.num_fft_bins].abs()), spec


def overlap_add(spec: torch.Tensor, n_samples: int, frontend: LogFilteredSpectrogram
                ) -> torch.Tensor:
    """Inverse of ``frontend.stft`` for ``n_samples`` samples: inverse FFT of every frame,
    windowed again, added at the frame starts ``int(i * hop)``, divided by the summed squared
    window (least-squares ISTFT, Griffin and Lim 1984). Where the squared window sums to
    (almost) zero, i.e. the very first samples (madmom frames start at sample 0 with a window
    that is 0 there), the output is 0: compare away from the clip edges."""
    cfg = frontend.config
    window = frontend.window.to(spec.real.dtype)
    frames = torch.fft.irfft(spec, n=cfg.frame_size) * window  # (T, N)
    starts = torch.from_numpy(cfg.frame_starts(n_samples)).to(spec.device)
    if starts.numel() != spec.shape[-2]:
        raise ValueError(f"overlap_add: {spec.shape[-2]} frames, but {n_samples} samples make "
                         f"{starts.numel()}")
    index = (starts[:, None] + torch.arange(cfg.frame_size, device=spec.device)).reshape(-1)
    length = int(starts[-1]) + cfg.frame_size
    out = torch.zeros(length, dtype=frames.dtype, device=spec.device)
    norm = torch.zeros_like(out)
    out.index_add_(0, index, frames.reshape(-1))
    norm.index_add_(0, index, (window * window).expand_as(frames).reshape(-1))
    ok = norm > EPS * float(norm.max())
    out = torch.where(ok, out / norm.clamp_min(EPS), torch.zeros_like(out))
    return out[:n_samples]


def resynthesize(X_new: torch.Tensor, spec: torch.Tensor, n_samples: int,
                 frontend: LogFilteredSpectrogram) -> torch.Tensor:
    """Audio whose log-magnitude is ``X_new (T, F)`` and whose phase is ``spec``'s: each bin of
    ``spec`` is scaled by ``expm1(X_new) / |spec|`` (the Nyquist bin, which ``X`` does not have,
    by the gain of the bin below it), then :func:`overlap_add`."""
    mag = spec[..., : X_new.shape[-1]].abs()
    gain = torch.where(mag > 0, torch.expm1(X_new).clamp_min(0) / mag.clamp_min(1e-30),
                       torch.zeros_like(mag))
    gain = torch.cat([gain, gain[..., -1:]], dim=-1)[..., : spec.shape[-1]]
    return overlap_add(spec * gain, n_samples, frontend)


def soft_masks(X: torch.Tensor, W: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    """Per-component parts of ``X (T, F)``: ``X_k = (w_k h_kᵀ / WH) ⊙ X``, shape ``(K, T, F)``.

    Where ``WH`` is 0 (all activations off) the bin is shared equally among the K components,
    so the parts always sum back to ``X``.
    """
    parts = W.T[:, None, :] * H[:, :, None]  # (K, T, F)
    total = parts.sum(0, keepdim=True)
    k = parts.shape[0]
    masks = torch.where(total > EPS, parts / total.clamp_min(EPS),
                        torch.full_like(parts, 1.0 / k))
    return masks * X
