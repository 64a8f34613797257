"""Several models of one config as one network (batched seeds), so one kernel launch serves all.

``StackedModel.from_models([m_0, ..., m_{S-1}])`` turns S :class:`MERModel` s of the same config
into one network whose every layer holds the S copies side by side:

- each ``Conv2d(C_in, C_out)`` becomes one ``Conv2d(S·C_in, S·C_out, groups=S)``: group ``s``
  sees only seed ``s``'s channels, with seed ``s``'s weights;
- each ``BatchNorm2d(C)`` becomes one ``BatchNorm2d(S·C)``: its statistics are per channel over
  the batch, so seed ``s``'s channels are normalised with seed ``s``'s batch statistics exactly;
- each ``Dropout2d`` becomes :class:`SeedDropout2d`, which draws seed ``s``'s channel mask with
  seed ``s``'s own generator, exactly as the solo model's ``Dropout2d`` would from its RNG;
- each ``Linear`` becomes :class:`StackedLinear`, a batched matmul with an ``(S, out, in)``
  weight.

Input ``(B, S, T, F)``: channel ``s`` is seed ``s``'s batch of clips (each seed its own clips).
``forward_all`` returns ``(S, B, n)`` tensors. The state dict has the solo model's keys, each
tensor the S solo tensors concatenated (backbone) or stacked (linear layers);
:func:`stack_tensors` / :func:`unstack_tensor` convert, :meth:`StackedModel.to_models` gives the
S solo models back with their exact weights and BatchNorm buffers.

Why grouped convolutions and not ``torch.func.vmap``: vmap of a convolution over stacked weights
is itself lowered to a grouped convolution, and BatchNorm's in-place running-statistics update
does not vmap, so the explicit form is simpler and the same speed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from robustmer.errors import ConfigError
from robustmer.models.heads import MERModel, head_outputs


class SeedDropout2d(nn.Module):
    """``Dropout2d`` over ``S`` seeds' channel blocks, each block's mask drawn from its own
    generator (``generators[s]``, or torch's global RNG, seed after seed, when unset).

    Seed ``s``'s mask is drawn exactly as ``F.dropout2d`` draws it (a ``(B, C, 1, 1)``
    ``bernoulli_(1-p)`` of the input's dtype, divided by ``1-p``), so with the generator in the
    solo run's RNG state the masks are the solo run's masks, bit for bit."""

    def __init__(self, p: float, n_seeds: int) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"SeedDropout2d: p must be in [0, 1), found {p}")
        self.p = float(p)
        self.n_seeds = int(n_seeds)
        self.generators: list[torch.Generator] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, S·C, H, W)`` -> same shape, each seed's channels dropped with its own mask."""
        if not self.training or self.p == 0.0 or x.numel() == 0:
            return x
        b, sc = x.shape[0], x.shape[1]
        c = sc // self.n_seeds
        gens: Sequence[torch.Generator | None] = self.generators or [None] * self.n_seeds
        masks = []
        for gen in gens:
            noise = x.new_empty((b, c) + (1,) * (x.ndim - 2))
            noise.bernoulli_(1.0 - self.p, generator=gen)
            masks.append(noise.div_(1.0 - self.p))
        return x * torch.cat(masks, dim=1)

    def extra_repr(self) -> str:
        return f"p={self.p}, n_seeds={self.n_seeds}"


class StackedLinear(nn.Module):
    """``S`` linear layers applied side by side: ``(S, B, in)`` -> ``(S, B, out)`` with weight
    ``(S, out, in)`` and bias ``(S, out)`` (one ``baddbmm``)."""

    def __init__(self, n_seeds: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_seeds, out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(n_seeds, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(S, B, in)`` -> ``(S, B, out)``."""
        return torch.baddbmm(self.bias[:, None, :], x, self.weight.transpose(1, 2))


class _StackedBackbone(nn.Module):
    """The solo backbone's ``features`` with every layer stacked (same indices, same keys)."""

    def __init__(self, features: nn.Sequential, n_seeds: int) -> None:
        super().__init__()
        self.features = nn.Sequential(*(_stack_layer(m, n_seeds, i)
                                        for i, m in enumerate(features)))


def _stack_layer(m: nn.Module, s: int, index: int) -> nn.Module:
    """The stacked counterpart of one backbone layer (weights not copied yet)."""
    if isinstance(m, nn.Conv2d):
        if m.groups != 1 or m.padding_mode != "zeros":
            raise ConfigError(f"StackedModel: backbone layer {index} ({m}) is not a plain conv")
        return nn.Conv2d(s * m.in_channels, s * m.out_channels, m.kernel_size,  # type: ignore[arg-type]
                         stride=m.stride, padding=m.padding, dilation=m.dilation,  # type: ignore[arg-type]
                         groups=s, bias=m.bias is not None)
    if isinstance(m, nn.BatchNorm2d):
        return nn.BatchNorm2d(s * m.num_features, eps=m.eps, momentum=m.momentum,
                              affine=m.affine, track_running_stats=m.track_running_stats)
    if isinstance(m, nn.Dropout2d):
        return SeedDropout2d(m.p, s)
    if isinstance(m, nn.ReLU):
        return nn.ReLU(inplace=m.inplace)
    if isinstance(m, nn.MaxPool2d | nn.AdaptiveAvgPool2d | nn.Flatten):
        return type(m)(**{k: getattr(m, k) for k in _POOL_ARGS[type(m)]})
    raise ConfigError(f"StackedModel: backbone layer {index} ({type(m).__name__}) has no "
                      f"stacked form")


_POOL_ARGS: dict[type, tuple[str, ...]] = {
    nn.MaxPool2d: ("kernel_size", "stride", "padding", "dilation", "ceil_mode"),
    nn.AdaptiveAvgPool2d: ("output_size",),
    nn.Flatten: ("start_dim", "end_dim"),
}


def _is_backbone(key: str) -> bool:
    return key.startswith("backbone.")


def stack_tensors(key: str, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The stacked model's tensor for state key ``key`` from the S solo tensors: backbone
    tensors concatenated along dim 0 (grouped conv / BatchNorm channel blocks), linear ones
    stacked; ``num_batches_tracked`` (the same in every seed) is kept once."""
    if key.endswith("num_batches_tracked"):
        if any(not torch.equal(t, tensors[0]) for t in tensors[1:]):
            raise ConfigError(f"StackedModel: {key} differs between the models "
                              f"({[int(t) for t in tensors]}); stack models trained in step")
        return tensors[0].clone()
    if _is_backbone(key):
        return torch.cat(list(tensors), dim=0)
    return torch.stack(list(tensors), dim=0)


def unstack_tensor(key: str, tensor: torch.Tensor, n_seeds: int) -> list[torch.Tensor]:
    """Inverse of :func:`stack_tensors`: the S solo tensors (copies) of ``key``."""
    if key.endswith("num_batches_tracked"):
        return [tensor.clone() for _ in range(n_seeds)]
    if _is_backbone(key):
        return [t.clone() for t in tensor.chunk(n_seeds, dim=0)]
    return [tensor[i].clone() for i in range(n_seeds)]


class StackedModel(nn.Module):
    """S models of one config trained as one (see the module docstring). Build it with
    :meth:`from_models`; :meth:`to_models` gives the S :class:`MERModel` s back."""

    def __init__(self, config: dict[str, Any], n_seeds: int) -> None:
        super().__init__()
        if n_seeds < 1:
            raise ConfigError(f"StackedModel: n_seeds must be >= 1, found {n_seeds}")
        self.config = dict(config)
        self.kind: str = config["kind"]
        self.n_seeds = int(n_seeds)
        with torch.random.fork_rng(devices=[]):  # the template's init must not move the RNG
            template = MERModel(**config)
        self.backbone = _StackedBackbone(template.backbone.features, n_seeds)
        bott = template.bottleneck
        self.bottleneck: StackedLinear | None = (
            StackedLinear(n_seeds, bott.in_features, bott.out_features)
            if bott is not None else None)
        self.head = StackedLinear(n_seeds, template.head.in_features, template.head.out_features)

    @classmethod
    def from_models(cls, models: Sequence[MERModel]) -> StackedModel:
        """Stack ``models`` (same ``config``) with their exact weights, buffers and mode, on the
        first model's device."""
        if len(models) < 1:
            raise ConfigError("StackedModel.from_models: models is empty")
        for i, m in enumerate(models):
            if not isinstance(m, MERModel):
                raise ConfigError(f"StackedModel.from_models: models[{i}] is a "
                                  f"{type(m).__name__}, not a MERModel")
            diff = sorted(k for k in set(m.config) | set(models[0].config)
                          if m.config.get(k) != models[0].config.get(k))
            if diff:
                raise ConfigError(
                    "StackedModel.from_models: models[{}] has another config: {}".format(
                        i, "; ".join(f"{k}: {models[0].config.get(k)!r} vs {m.config.get(k)!r}"
                                     for k in diff)))
        ref = next(models[0].parameters())
        stacked = cls(models[0].config, len(models)).to(ref.device)
        stacked.load_solo_states([m.state_dict() for m in models])
        stacked.train(models[0].training)
        return stacked

    def load_solo_states(self, states: Sequence[dict[str, torch.Tensor]]) -> None:
        """Load S solo state dicts (``MERModel.state_dict()`` each) into this model."""
        if len(states) != self.n_seeds:
            raise ConfigError(f"StackedModel: {len(states)} state dicts for {self.n_seeds} seeds")
        own = self.state_dict()
        for i, st in enumerate(states):
            if set(st) != set(own):
                raise ConfigError(f"StackedModel: state {i} has keys {sorted(set(st) ^ set(own))} "
                                  f"that do not match the model")
        self.load_state_dict({k: stack_tensors(k, [st[k] for st in states]) for k in own})

    def solo_states(self) -> list[dict[str, torch.Tensor]]:
        """The S solo state dicts (copies, on this model's device)."""
        out: list[dict[str, torch.Tensor]] = [{} for _ in range(self.n_seeds)]
        for key, val in self.state_dict().items():
            for s, t in enumerate(unstack_tensor(key, val.detach(), self.n_seeds)):
                out[s][key] = t
        return out

    def to_models(self, into: Sequence[MERModel] | None = None) -> list[MERModel]:
        """The S solo models with this model's exact weights and buffers, device and mode;
        ``into``: S existing models of the same config to copy them into (no new allocation,
        no init), else new ones."""
        device = next(self.parameters()).device
        if into is not None and len(into) != self.n_seeds:
            raise ConfigError(f"StackedModel.to_models: {len(into)} models for "
                              f"{self.n_seeds} seeds")
        models = []
        with torch.random.fork_rng(devices=[]):
            for s, state in enumerate(self.solo_states()):
                m = MERModel(**self.config) if into is None else into[s]
                m.load_state_dict(state)
                models.append(m.to(device).train(self.training))
        return models

    def set_generators(self, generators: Sequence[torch.Generator] | None) -> None:
        """Draw seed ``s``'s dropout masks from ``generators[s]`` (None: torch's global RNG)."""
        if generators is not None and len(generators) != self.n_seeds:
            raise ConfigError(f"StackedModel: {len(generators)} generators for "
                              f"{self.n_seeds} seeds")
        for m in self.modules():
            if isinstance(m, SeedDropout2d):
                m.generators = None if generators is None else list(generators)

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """``(B, S, T, F)`` -> ``{"output", "bottleneck"}``, each ``(S, B, n)`` or None, as
        :meth:`MERModel.forward_all` per seed."""
        if x.ndim != 4 or x.shape[1] != self.n_seeds:
            raise ValueError(f"expected input of shape (B, {self.n_seeds}, T, F), "
                             f"got {tuple(x.shape)}")
        h = self.backbone.features(x)  # (B, S*C)
        return head_outputs(self, h.reshape(h.shape[0], self.n_seeds, -1).transpose(0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The outputs (or class logits) ``(S, B, n)``."""
        return self.forward_all(x)["output"]  # type: ignore[return-value]


class SeedInterleaved(nn.Module):
    """A :class:`StackedModel` as one ordinary ``module(x) -> (N, n)`` that attacks and
    explainers can use: row ``i`` of ``x`` ``(N, 1, T, F)`` goes to seed ``i % S``.

    This is how several models' attacks run at once: repeat every clip S times
    (``x.repeat_interleave(S, 0)``, the same for the targets) and attack this module. The
    attacks in ``robustmer.attacks`` keep a separate perturbation, step and stopping state per
    row, so each seed's rows are attacked as that seed's model alone would be (up to float
    rounding), while one kernel launch serves all seeds. Any batch of whole groups of S rows
    works, so the attack runner may split the rows into batches that are multiples of S.
    """

    def __init__(self, stacked: StackedModel) -> None:
        super().__init__()
        self.stacked = stacked

    @classmethod
    def from_models(cls, models: Sequence[MERModel]) -> SeedInterleaved:
        """Stack ``models`` (see :meth:`StackedModel.from_models`) behind the interleaved view."""
        return cls(StackedModel.from_models(models))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(b·S, 1, T, F)`` (row i for seed i % S) -> ``(b·S, n)``."""
        s = self.stacked.n_seeds
        if x.ndim != 4 or x.shape[1] != 1 or x.shape[0] % s:
            raise ValueError(f"expected input of shape (b*{s}, 1, T, F) (whole groups of the "
                             f"{s} seeds' rows), got {tuple(x.shape)}")
        out = self.stacked(x.reshape(x.shape[0] // s, s, *x.shape[2:]))  # (S, b, n)
        flat: torch.Tensor = out.transpose(0, 1).reshape(x.shape[0], -1)
        return flat
