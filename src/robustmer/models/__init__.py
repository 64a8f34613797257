"""Models: the registry of model types (``models.types``: the paper's A2E / A2B2E / A2M2E /
adversarial variants / classifier, and a user's own model through a factory, ``models.factory``),
the Chowdhury et al. backbone and its heads.

Knows nothing of data, training or attacks.
"""

from robustmer.models.backbone import Backbone, init_weights, scaled
from robustmer.models.factory import FactoryType
from robustmer.models.heads import (
    BOTTLENECK_KINDS,
    KINDS,
    BottleneckOutput,
    MERModel,
    build_model,
)
from robustmer.models.types import (
    REGISTRY,
    MERType,
    ModelType,
    for_config,
    get_type,
    rebuild,
    register,
)

__all__ = [
    "BOTTLENECK_KINDS", "KINDS", "REGISTRY", "Backbone", "BottleneckOutput", "FactoryType",
    "MERModel", "MERType", "ModelType", "build_model", "for_config", "get_type", "init_weights",
    "rebuild", "register", "scaled",
]
