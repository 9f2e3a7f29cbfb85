"""Cost of building the prod stack with the components vs a hand-written pulumi_kubernetes program.

Both run under the same mock runtime (ha_ai_stack_tools.capture) and declare the same Kubernetes
objects: the baseline is built from the components' own capture of the same config, so it follows the
stack as it grows (checked before timing). Median of RUNS runs, interleaved so drift hits both.
Usage: python bench/program_cost.py [--runs 7] [--sizes 5 25 50] [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pulumi  # noqa: E402
import pulumi_kubernetes as k8s  # noqa: E402
import yaml  # noqa: E402

from ha_ai_stack_tools.capture import Capture, CapturedResource, Project, capture_program  # noqa: E402
from ha_ai_stack_tools.render import manifests  # noqa: E402

def stack_config(services: int) -> dict[str, Any]:
    """The prod stack file as it is today, with its first inference service repeated ``services`` times."""
    config = dict(yaml.safe_load((ROOT / "stacks" / "Pulumi.prod.yaml").read_text())["config"])
    first = config["haai:inference"][0]
    config["haai:inference"] = [{**first, "name": f"svc-{i}"} for i in range(services)]
    return config


def _group_module(type_token: str) -> tuple[Any, str]:
    """``kubernetes:apps/v1:Deployment`` -> (``k8s.apps.v1``, ``Deployment``); (None, kind) for a CRD's kind."""
    _, group_version, kind = type_token.split(":")
    group, version = group_version.rsplit("/", 1)
    module = getattr(getattr(k8s, group.split(".")[0], None), version, None)
    return (module if module is not None and hasattr(module, kind) else None), kind


def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def hand_written(template: list[CapturedResource]) -> Callable[[], None]:
    """The same objects, declared directly with pulumi_kubernetes (no component layer): what a user would
    write by hand. Built from the components' own capture, so it always declares what the stack declares."""

    def program() -> None:
        made: dict[str, Any] = {}
        for resource in template:
            opts = pulumi.ResourceOptions(depends_on=[made[u] for u in resource.dependencies if u in made],
                                          ignore_changes=list(resource.ignore_changes) or None)
            if not resource.type_token.startswith("kubernetes:"):  # cloud and random resources, as declared
                made[resource.urn] = pulumi.CustomResource(resource.type_token, resource.name,
                                                           dict(resource.inputs), opts=opts)
                continue
            module, kind = _group_module(resource.type_token)
            if module is None:  # a custom resource (Karpenter, prometheus-operator, KEDA)
                made[resource.urn] = k8s.apiextensions.CustomResource(
                    resource.name, api_version=resource.inputs["apiVersion"], kind=resource.inputs["kind"],
                    metadata=resource.inputs.get("metadata"), spec=resource.inputs.get("spec"), opts=opts)
                continue
            kwargs = {_snake(k): v for k, v in resource.inputs.items() if k not in ("apiVersion", "kind")}
            made[resource.urn] = getattr(module, kind)(resource.name, **kwargs, opts=opts)

    return program


def run(kind: str, services: int, template: list[CapturedResource] | None = None) -> tuple[float, Capture]:
    """One timed build; returns (seconds, capture)."""
    if kind == "components":
        program, config = Project.load(ROOT).run_program, stack_config(services)
    else:
        assert template is not None
        program, config = hand_written(template), {}
    started = time.perf_counter()
    capture = capture_program(program, project="ha-ai-stack", stack="prod", config=config)
    elapsed = time.perf_counter() - started
    return elapsed, capture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 25, 50])
    parser.add_argument("--smoke", action="store_true", help="one small run: proves the benchmark still works (CI)")
    options = parser.parse_args()
    if options.smoke:
        options.runs, options.sizes = 1, [2]

    templates = {}
    for size in options.sizes:
        _, ours = run("components", size)
        templates[size] = [r for r in ours.resources if r.custom]
        _, theirs = run("hand-written", size, templates[size])
        if manifests(ours) != manifests(theirs):
            raise SystemExit(f"the two programs declare different objects at {size} services")

    rows = []
    for size in options.sizes:
        timings: dict[str, list[float]] = {"components": [], "hand-written": []}
        for _ in range(options.runs):
            for kind in timings:
                timings[kind].append(run(kind, size, templates[size])[0])
        ours, theirs = (statistics.median(timings[k]) for k in ("components", "hand-written"))
        rows.append((size, ours, theirs))

    base_per_service = rows[0][1] / rows[0][0]
    print(f"prod stack under mocks, median of {options.runs} runs (ms)")
    print(f"{'services':>8} | {'components':>10} | {'hand-written':>12} | {'ms/service':>10} | "
          f"{'ratio':>5} | {'per-service vs first':>20}")
    for size, ours, theirs in rows:
        per_service = ours / size
        print(f"{size:>8} | {ours * 1000:>10.1f} | {theirs * 1000:>12.1f} | {per_service * 1000:>10.2f} | "
              f"{ours / theirs:>5.2f} | {per_service / base_per_service:>19.2f}x")


if __name__ == "__main__":
    main()
