"""Models: the Chowdhury et al. backbone and the A2E / A2B2E / A2M2E / classifier heads.

Knows nothing of data, training or attacks.
"""

from robustmer.models.backbone import Backbone, init_weights, scaled
from robustmer.models.heads import (
    BOTTLENECK_KINDS,
    KINDS,
    BottleneckOutput,
    MERModel,
    build_model,
)

__all__ = [
    "BOTTLENECK_KINDS", "KINDS", "Backbone", "BottleneckOutput", "MERModel", "build_model",
    "init_weights", "scaled",
]
