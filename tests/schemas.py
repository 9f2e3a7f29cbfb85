"""Validate rendered objects: core kinds with kubernetes-validate (strict), Karpenter kinds with their CRDs.

The Karpenter CRDs come from ../shared/schemas/karpenter-v1.14.1 (see SOURCE.md there); CI lays a
copy of shared/ beside the clone. Unknown fields are errors, as in kubernetes-validate's strict mode.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

SHARED_SCHEMAS = Path(os.environ.get("HAAI_SHARED_SCHEMAS", Path(__file__).resolve().parents[2] / "shared" / "schemas"))
CRD_FILES = {
    "karpenter.sh/v1/NodePool": "karpenter-v1.14.1/karpenter.sh_nodepools.yaml",
    "karpenter.k8s.aws/v1/EC2NodeClass": "karpenter-v1.14.1/karpenter.k8s.aws_ec2nodeclasses.yaml",
    "monitoring.coreos.com/v1/ServiceMonitor": "prometheus-operator-v0.93.0/monitoring.coreos.com_servicemonitors.yaml",
    "monitoring.coreos.com/v1/PodMonitor": "prometheus-operator-v0.93.0/monitoring.coreos.com_podmonitors.yaml",
    "monitoring.coreos.com/v1/PrometheusRule": "prometheus-operator-v0.93.0/monitoring.coreos.com_prometheusrules.yaml",
    "keda.sh/v1alpha1/ScaledObject": "keda-v2.20.1-plus/keda.sh_scaledobjects.yaml",
}


def _strict(schema: Any) -> Any:
    """Forbid properties a schema does not declare, unless it preserves unknown fields."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_strict(v) for v in schema]
    return schema


@functools.cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    path = SHARED_SCHEMAS / CRD_FILES[f"{api_version}/{kind}"]
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the CRD schemas live in ../shared/schemas "
                                f"(or set HAAI_SHARED_SCHEMAS)")
    crd = yaml.safe_load(path.read_text())
    version = api_version.split("/")[1]
    schema = next(v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"] if v["name"] == version)
    return jsonschema.Draft7Validator(_strict(schema))


def validate_object(manifest: dict[str, Any], kubernetes_version: str) -> None:
    """Raise on the first schema violation of one rendered object."""
    key = f"{manifest['apiVersion']}/{manifest['kind']}"
    if key in CRD_FILES:
        error = jsonschema.exceptions.best_match(crd_validator(manifest["apiVersion"], manifest["kind"])
                                                 .iter_errors(manifest))
        if error is not None:
            raise error
    else:
        kubernetes_validate.validate(manifest, f"{kubernetes_version}.0", strict=True)
