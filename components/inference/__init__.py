"""InferenceService: spec (Args), build (pure object builders) and component (resources)."""

from .build import InferenceObjects, build_inference_objects, rollout_deadline_seconds
from .component import InferenceService
from .spec import (
    AutoscalingSpec,
    DisruptionSpec,
    InferenceServiceArgs,
    InferenceSpec,
    MetricSpec,
    ResourceSpec,
    SecretKeyRef,
)

__all__ = [
    "AutoscalingSpec",
    "DisruptionSpec",
    "InferenceObjects",
    "InferenceService",
    "InferenceServiceArgs",
    "InferenceSpec",
    "MetricSpec",
    "ResourceSpec",
    "SecretKeyRef",
    "build_inference_objects",
    "rollout_deadline_seconds",
]
