"""The L2I interpreter: Ψ (hidden features -> NMF activations H) and Θ (H -> the model's
outputs), read from forward hooks on a frozen model (Parekh et al., NeurIPS 2022).

The model classes are not changed: :class:`FeatureHooks` registers forward hooks that only
*store* the outputs of the layers Ψ reads and return ``None``, so the model's outputs are
untouched. The layers are module paths of the model (``model.named_modules()`` names) chosen by
the user, or by default the last three convolution blocks (each block's output = the first
activation after its ``Conv1d``/``Conv2d``, or the conv itself where there is none). A 2-D
layer's output is ``(B, C, T, F)`` (time third, as robustmer's spectrogram input is laid out); a
1-D layer's ``(B, C, T)`` is read as ``(B, C, T, 1)``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustmer.errors import ConfigError

POOLINGS: tuple[str, ...] = ("att", "max")
CONVOLUTIONS: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d)
"""The module types that start a convolution block for :func:`last_conv_blocks`."""
ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.LeakyReLU, nn.ReLU6, nn.ELU, nn.GELU,
                                            nn.SiLU, nn.PReLU)
"""The activations that end a convolution block (its output is the block's output)."""
LAYERS_HINT = ("name the layers Ψ reads with --layers a,b,c (CLI) or layers=['a', 'b', 'c'] "
               "(Python), module paths of the model as model.named_modules() names them")


def layer_candidates(model: nn.Module, n: int = 10) -> list[str]:
    """``"name (Type)"`` of the last ``n`` leaf modules with parameters: what an error shows the
    user to choose ``--layers`` from."""
    leaves = [f"{name} ({type(m).__name__})" for name, m in model.named_modules()
              if name and not any(True for _ in m.children())
              and any(True for _ in m.parameters(recurse=False))]
    return leaves[-n:]


def _candidates_text(model: nn.Module) -> str:
    found = layer_candidates(model)
    return (f"; the model's last modules with parameters: {', '.join(found)}" if found
            else "; the model has no modules with parameters")


def last_conv_blocks(model: nn.Module, n: int = 3) -> list[str]:
    """Names of the modules whose outputs are the last ``n`` conv blocks of ``model``: per
    ``Conv1d``/``Conv2d`` (in ``named_modules`` order) the first activation module after it, or
    the conv itself when another conv comes first. ``ConfigError`` naming ``--layers`` /
    ``layers=`` (and candidate modules) when the model has fewer than ``n`` convolutions."""
    names = [name for name, _ in model.named_modules()]
    mods = dict(model.named_modules())
    stop = ACTIVATIONS + CONVOLUTIONS
    blocks = []
    for i, name in enumerate(names):
        if isinstance(mods[name], CONVOLUTIONS):
            after = next((m for m in names[i + 1:] if isinstance(mods[m], stop)), None)
            blocks.append(after if after is not None and isinstance(mods[after], ACTIVATIONS)
                          else name)
    if len(blocks) < n:
        raise ConfigError(f"L2I reads {n} layers of the model, by default its last {n} "
                          f"convolution blocks (Conv1d/Conv2d), but the model has {len(blocks)}; "
                          f"{LAYERS_HINT}{_candidates_text(model)}")
    return blocks[-n:]


def check_layers(model: nn.Module, layers: list[str] | tuple[str, ...] | None) -> list[str]:
    """The layers Ψ reads: ``layers`` checked to be module paths of ``model`` (the whole model,
    ``""``, is not a layer), or :func:`last_conv_blocks` when None. ``ConfigError`` naming
    ``--layers`` / ``layers=`` and candidate modules otherwise."""
    if layers is None:
        return last_conv_blocks(model)
    layers = [str(name).strip() for name in layers]
    if not layers:
        raise ConfigError(f"layers: the list is empty; {LAYERS_HINT}")
    mods = dict(model.named_modules())
    missing = [name for name in layers if not name or name not in mods]
    if missing:
        raise ConfigError(f"--layers / layers=: the model has no module(s) {missing}; "
                          f"{LAYERS_HINT}{_candidates_text(model)}")
    return layers


class FeatureHooks:
    """Context manager: while open, ``self.features`` holds the outputs of ``layers`` from the
    latest forward pass (in ``layers`` order), each ``(B, C, T, F)`` (a ``(B, C, T)`` output as
    ``(B, C, T, 1)``)."""

    def __init__(self, model: nn.Module, layers: list[str] | None = None) -> None:
        self.model = model
        self.layers = check_layers(model, layers)
        mods = dict(model.named_modules())
        self._mods = [mods[name] for name in self.layers]
        self._store: dict[int, Any] = {}
        self._calls: dict[int, int] = {}
        self._handles: list[Any] = []

    def _hook(self, i: int) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            self._calls[i] = self._calls.get(i, 0) + 1
            if isinstance(output, torch.Tensor) and output.ndim == 3:
                output = output[..., None]
            self._store[i] = (output.detach().clone() if isinstance(output, torch.Tensor)
                              else output)
        return hook

    def _reset(self, _module: nn.Module, _inputs: Any) -> None:
        self._calls.clear()

    def __enter__(self) -> FeatureHooks:
        self._handles = [self.model.register_forward_pre_hook(self._reset)]
        self._handles += [m.register_forward_hook(self._hook(i))
                          for i, m in enumerate(self._mods)]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    @property
    def features(self) -> list[torch.Tensor]:
        """The stored ``(B, C_i, T_i, F_i)`` outputs of the hooked layers; ``ConfigError`` when
        a layer did not run, ran more than once in the pass (a shared module: only its last call
        would be kept), or gave no ``(B, C, T)`` / ``(B, C, T, F)`` tensor."""
        out = []
        for i, name in enumerate(self.layers):
            calls = self._calls.get(i, 0)
            if calls != 1:
                raise ConfigError(f"L2I layer {name!r} ran {calls} times in one forward pass "
                                  f"(Ψ needs layers that run once: a module reused at several "
                                  f"places cannot be read); {LAYERS_HINT}"
                                  f"{_candidates_text(self.model)}")
            f = self._store[i]
            if not isinstance(f, torch.Tensor) or f.ndim != 4:
                what = (f"shape {tuple(f.shape)}" if isinstance(f, torch.Tensor)
                        else f"a {type(f).__name__}")
                raise ConfigError(f"L2I layer {name!r} outputs {what}; Ψ reads (batch, "
                                  f"channels, time) or (batch, channels, time, frequency) "
                                  f"tensors; {LAYERS_HINT}{_candidates_text(self.model)}")
            out.append(f)
        return out


def run_with_features(model: nn.Module, x: torch.Tensor, hooks: FeatureHooks
                      ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``model(x)`` without gradients and the hooked features of that pass."""
    with torch.no_grad():
        out = model(x)
    return out, hooks.features


class Psi(nn.Module):
    """Hidden features -> ``H (B, K, T)`` >= 0.

    Each feature map is resized to the first one's (time, frequency) grid, the maps are
    concatenated along channels, a 1x1 conv mixes them, frequency is averaged away, time is
    upsampled (linear) to the ``T`` frames of ``X``, and a width-3 1-D conv maps to ``K``
    channels, then ReLU.
    """

    def __init__(self, in_channels: list[int], k: int, hidden: int = 128) -> None:
        super().__init__()
        self.mix = nn.Sequential(nn.Conv2d(sum(in_channels), hidden, 1), nn.ReLU())
        self.out = nn.Conv1d(hidden, k, 3, padding=1)

    def forward(self, features: list[torch.Tensor], frames: int) -> torch.Tensor:
        grid = features[0].shape[-2:]
        maps = [f if f.shape[-2:] == grid else
                F.interpolate(f, size=grid, mode="bilinear", align_corners=False)
                for f in features]
        h = self.mix(torch.cat(maps, dim=1)).mean(dim=-1)  # (B, hidden, T')
        h = F.interpolate(h, size=frames, mode="linear", align_corners=False)
        return F.relu(self.out(h))


class Theta(nn.Module):
    """``H (B, K, T)`` -> pooled ``z (B, K)`` -> ``y = θ z + b``. ``pooling="att"``: gated
    attention over time (Ilse et al. 2018); ``"max"``: max over time."""

    def __init__(self, k: int, n_outputs: int, pooling: str = "att", attention: int = 64) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"Theta: pooling must be one of {list(POOLINGS)}, got {pooling!r}")
        self.pooling = pooling
        if pooling == "att":
            self.V = nn.Linear(k, attention)
            self.U = nn.Linear(k, attention)
            self.w = nn.Linear(attention, 1)
        self.fc = nn.Linear(k, n_outputs)

    def pool(self, H: torch.Tensor) -> torch.Tensor:
        """``(B, K, T)`` -> ``z (B, K)``."""
        if self.pooling == "max":
            return H.amax(dim=-1)
        h = H.transpose(1, 2)  # (B, T, K)
        a = torch.softmax(self.w(torch.tanh(self.V(h)) * torch.sigmoid(self.U(h))), dim=1)
        return (a * h).sum(dim=1)

    def forward(self, H: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc(self.pool(H))
        return out


class Interpreter(nn.Module):
    """Ψ + Θ; ``config`` rebuilds it (``Interpreter(**config)``)."""

    def __init__(self, in_channels: list[int], k: int, n_outputs: int, pooling: str = "att",
                 hidden: int = 128, layers: list[str] | None = None) -> None:
        super().__init__()
        self.config: dict[str, Any] = {"in_channels": list(in_channels), "k": int(k),
                                       "n_outputs": int(n_outputs), "pooling": pooling,
                                       "hidden": int(hidden), "layers": layers}
        self.psi = Psi(in_channels, k, hidden)
        self.theta = Theta(k, n_outputs, pooling)

    def forward(self, features: list[torch.Tensor], frames: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> ``(H (B, K, T), y (B, n_outputs))``."""
        H = self.psi(features, frames)
        return H, self.theta(H)


def relevance(theta: Theta, H: torch.Tensor) -> torch.Tensor:
    """``r (B, n_outputs, K)``: ``r_{k,c} = z_k θ_{c,k} / max_l |z_l θ_{c,l}|`` (no gradient)."""
    with torch.no_grad():
        z = theta.pool(H)  # (B, K)
        contrib = z[:, None, :] * theta.fc.weight[None]  # (B, C, K)
        return contrib / contrib.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12)


def select(r: torch.Tensor, tau: float) -> torch.Tensor:
    """Boolean mask of the selected components ``L = {k : r_k > tau}`` (same shape as ``r``)."""
    if not 0.0 <= tau < 1.0:
        raise ConfigError(f"tau must be in [0, 1), got {tau}")
    return r > tau
