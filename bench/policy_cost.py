"""Cost of the policy pack over the gRPC analyzer protocol: full pack vs every rule disabled, same run.

A synthetic stack of N resources is made from the prod stack's real objects, repeated under new
names. Each timing covers Analyze for every resource plus one AnalyzeStack, as the engine sends them.
Usage: python bench/policy_cost.py [--resources 1000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ha_ai_stack_tools.capture import CapturedResource, capture_stack  # noqa: E402
from ha_ai_stack_tools.policy_check import analyze, configure, running_pack, tier_config  # noqa: E402


def synthetic_stack(size: int) -> list[CapturedResource]:
    """``size`` resources: copies of the prod stack's custom resources, each copy renamed."""
    base = [r for r in capture_stack("prod", project_root=ROOT).resources if r.custom]
    resources = []
    for copy in range(size // len(base) + 1):
        for resource in base:
            inputs = dict(resource.inputs)
            if "metadata" in inputs:
                inputs["metadata"] = {**inputs["metadata"], "name": f"{inputs['metadata']['name']}-{copy}"}
            resources.append(replace(resource, name=f"{resource.name}-{copy}", urn=f"{resource.urn}-{copy}",
                                     inputs=inputs))
    return resources[:size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="one small run: proves the benchmark still works (CI)")
    options = parser.parse_args()
    if options.smoke:
        options.resources, options.runs = 50, 1
    resources = synthetic_stack(options.resources)
    pack_dir = ROOT / "policies"
    timings: dict[str, list[float]] = {"disabled": [], "full": []}
    findings = 0
    with running_pack(pack_dir) as stub:
        configs = {"disabled": {"all": "disabled"}, "full": tier_config(pack_dir, "prod")}
        analyze(stub, resources)  # warm up the channel and the pack's imports
        for _ in range(options.runs):
            for name, config in configs.items():
                configure(stub, config)
                started = time.perf_counter()
                result = analyze(stub, resources)
                timings[name].append(time.perf_counter() - started)
                findings = len(result) if name == "full" else findings
    disabled, full = (statistics.median(timings[k]) for k in ("disabled", "full"))
    print(f"policy pack over gRPC, {len(resources)} resources, median of {options.runs} runs")
    print(f"{'pack':<10} | {'seconds':>8} | {'resources/s':>11} | {'ratio':>5}")
    print(f"{'disabled':<10} | {disabled:>8.3f} | {len(resources) / disabled:>11.0f} | {1:>5.2f}")
    print(f"{'full':<10} | {full:>8.3f} | {len(resources) / full:>11.0f} | {full / disabled:>5.2f}")
    print(f"findings with the full pack: {findings} (names repeat across copies, so some rules see duplicates)")


if __name__ == "__main__":
    main()
