"""Model heads on the shared backbone: A2E, A2B2E, A2M2E (concept bottleneck) and a classifier.

``model(x)`` returns one plain tensor (the regression outputs ``(B, n_outputs)``, e.g. the 8
emotions, or class logits) so captum and the attacks see an ordinary ``nn.Module``;
``forward_all`` also exposes the bottleneck.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from robustmer.errors import ConfigError
from robustmer.models.backbone import DROPOUT, Backbone, init_weights

KINDS: tuple[str, ...] = ("a2e", "a2b2e", "a2m2e", "classifier")
"""Model kinds: audio->emotion, audio->bottleneck->emotion, audio->mid-level->emotion, classes."""

BOTTLENECK_KINDS: tuple[str, ...] = ("a2b2e", "a2m2e")


class MERModel(nn.Module):
    """Backbone + head. Build with :func:`build_model`; ``config`` rebuilds it."""

    def __init__(self, kind: str = "a2e", width: float = 1.0, n_outputs: int = 8,
                 n_concepts: int = 7, n_classes: int | None = None,
                 dropout: float = DROPOUT) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ConfigError(f"model kind must be one of {list(KINDS)}, found {kind!r}")
        if kind == "classifier" and (n_classes is None or n_classes < 2):
            raise ConfigError(f"kind 'classifier' needs n_classes >= 2, found {n_classes!r}")
        for name, val in (("n_outputs", n_outputs), ("n_concepts", n_concepts)):
            if val < 1:
                raise ConfigError(f"{name} must be >= 1, found {val}")
        self.kind = kind
        self.config: dict[str, Any] = {
            "kind": kind, "width": float(width), "n_outputs": int(n_outputs),
            "n_concepts": int(n_concepts), "n_classes": None if n_classes is None
            else int(n_classes),
        }
        if dropout != DROPOUT:  # only a departure is recorded: older model configs stay valid
            self.config["dropout"] = float(dropout)
        self.backbone = Backbone(width, dropout)
        feat = self.backbone.out_features
        # A2B2E / A2M2E: a linear bottleneck with no activation, then a linear emotion layer, so
        # every emotion is an affine function of the concepts (what makes A2M2E explainable).
        self.bottleneck: nn.Linear | None = (
            nn.Linear(feat, n_concepts) if kind in BOTTLENECK_KINDS else None
        )
        head_in = n_concepts if self.bottleneck is not None else feat
        head_out = n_classes if kind == "classifier" else n_outputs
        self.head = nn.Linear(head_in, int(head_out))  # type: ignore[arg-type]
        self.apply(init_weights)

    @property
    def has_bottleneck(self) -> bool:
        """True for A2B2E and A2M2E."""
        return self.bottleneck is not None

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """``{"output": (B, n_outputs) values or (B, n_classes) logits, "bottleneck":
        (B, n_concepts) or None}``."""
        return head_outputs(self, self.backbone(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The outputs ``(B, n_outputs)``, or class logits for the classifier."""
        return self.forward_all(x)["output"]  # type: ignore[return-value]

    def concept_contributions(self, x: torch.Tensor) -> torch.Tensor:
        """Per-concept contribution to each output, ``(B, n_outputs, n_concepts)``.

        ``contrib[b, e, c] = bottleneck[b, c] * W[e, c]`` with ``W`` the last layer's weight. The
        last layer's bias is *not* spread over the concepts: it is the same for every input and is
        returned by :attr:`contribution_bias`, so that
        ``contrib.sum(-1) + contribution_bias == model(x)``.
        """
        if self.bottleneck is None:
            raise ConfigError(f"concept_contributions needs a bottleneck model (a2b2e, a2m2e); "
                              f"this model is {self.kind!r}")
        b = self.bottleneck(self.backbone(x))
        out: torch.Tensor = b[:, None, :] * self.head.weight[None, :, :]
        return out

    @property
    def contribution_bias(self) -> torch.Tensor:
        """The output layer's bias ``(n_outputs,)``: the input-independent part of each output."""
        return self.head.bias


def head_outputs(model: nn.Module, h: torch.Tensor) -> dict[str, torch.Tensor | None]:
    """The ``forward_all`` dict from backbone features ``h``, for any model with
    ``bottleneck`` (or None) and ``head`` (a :class:`MERModel` or a stacked one)."""
    bottleneck, head = getattr(model, "bottleneck"), getattr(model, "head")  # noqa: B009
    b = bottleneck(h) if bottleneck is not None else None
    return {"output": head(b if b is not None else h), "bottleneck": b}


class BottleneckOutput(nn.Module):
    """Wrap a bottleneck model so that ``wrapper(x)`` returns its bottleneck ``(B, n_concepts)``.

    Lets attacks and explainers (which expect ``module(x) -> tensor``) target the concepts.
    """

    def __init__(self, model: MERModel) -> None:
        super().__init__()
        if not getattr(model, "has_bottleneck", False):
            raise ConfigError(f"BottleneckOutput needs a model with a bottleneck (a2b2e, a2m2e), "
                              f"got {getattr(model, 'kind', type(model).__name__)!r}")
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The wrapped model's bottleneck activations."""
        return self.model.forward_all(x)["bottleneck"]  # type: ignore[return-value]


def build_model(kind: str, width: float = 1.0, n_outputs: int = 8, n_concepts: int = 7,
                n_classes: int | None = None, dropout: float = DROPOUT) -> MERModel:
    """Build a freshly initialised model (the init draws from torch's global RNG: seed first)."""
    return MERModel(kind=kind, width=width, n_outputs=n_outputs, n_concepts=n_concepts,
                    n_classes=n_classes, dropout=dropout)
