"""What a cluster refuses or breaks on that the OpenAPI schemas let through, over every render we ship.

The schemas (tests/schemas.py) check shapes; these check the values the API server takes only from a closed list,
the names of resources, what the kubelet expands in env values, the scripts probes and commands run from mounted
ConfigMaps, the ports monitors scrape and the workloads autoscalers scale. The three stacks leave some paths off
(a restore, a shared model cache, KEDA), so a prod variant that turns them on is checked too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.utils.quantity import parse_quantity

from ha_ai_stack_tools.render import manifests

from .conftest import RENDERS, once_per_session, render_capture

PULL_POLICIES = {"Always", "IfNotPresent", "Never"}
PROTOCOLS = {"TCP", "UDP", "SCTP"}
WORKLOAD_RESTART_POLICIES = {"Deployment": {"Always"}, "StatefulSet": {"Always"}, "DaemonSet": {"Always"},
                             "Job": {"OnFailure", "Never"}, "CronJob": {"OnFailure", "Never"}}
# A standard resource name, or a domain-qualified extended one (nvidia.com/gpu); names are case-sensitive.
RESOURCE_NAME = re.compile(r"^(cpu|memory|ephemeral-storage|hugepages-[0-9]+[KMG]i"
                           r"|[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
FIELD_PATHS = {"metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName",
               "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"}
# IANA service names, as the API server checks named ports: lowercase, at most 15, at least one letter.
PORT_NAME = re.compile(r"^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]([a-z0-9]|-(?!-))*[a-z0-9]$|^[a-z]$")
# A DNS-1123 label: what the API server takes as a container or volume name.
DNS_LABEL = re.compile(r"^(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
HPA_SELECT_POLICIES = {"Min", "Max", "Disabled"}
HPA_POLICY_TYPES = {"Pods", "Percent"}
VARIABLE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def rendered(render: str) -> list[dict[str, Any]]:
    return once_per_session(("manifests", render), lambda: manifests(render_capture(render)))


def pod_templates(objects: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, pod template) for every object that runs pods."""
    for manifest in objects:
        spec = manifest.get("spec") or {}
        if manifest["kind"] == "CronJob":
            yield manifest, spec["jobTemplate"]["spec"]["template"]
        elif manifest["kind"] in WORKLOAD_RESTART_POLICIES:
            yield manifest, spec["template"]


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def describe(workload: dict[str, Any], container: dict[str, Any] | None = None) -> str:
    where = f"{workload['kind']} {workload['metadata']['name']}"
    return f"{where} container {container['name']}" if container else where


def test_the_variant_turns_on_what_the_stacks_leave_off() -> None:
    objects = rendered("prod-variant")
    assert [m["metadata"]["name"] for m in objects if m["kind"] == "Job" and "restore" in m["metadata"]["name"]]
    assert [m for m in objects if m["kind"] == "ScaledObject"]
    volumes = [v for _, template in pod_templates(objects) for v in template["spec"].get("volumes", [])]
    assert {"name": "model-cache", "persistentVolumeClaim": {"claimName": "models-efs"}} in volumes


@pytest.mark.parametrize("render", RENDERS)
def test_values_the_api_server_takes_only_from_a_closed_list(render: str) -> None:
    problems = []
    objects = rendered(render)
    for workload, template in pod_templates(objects):
        pod = template["spec"]
        if pod.get("restartPolicy", "Always") not in WORKLOAD_RESTART_POLICIES[workload["kind"]]:
            problems.append(f"{describe(workload)}: restartPolicy {pod['restartPolicy']}")
        for container in containers(pod):
            where = describe(workload, container)
            if container.get("imagePullPolicy", "IfNotPresent") not in PULL_POLICIES:
                problems.append(f"{where}: imagePullPolicy {container['imagePullPolicy']}")
            problems += [f"{where}: port protocol {port['protocol']}" for port in container.get("ports", [])
                         if port.get("protocol", "TCP") not in PROTOCOLS]
            own_ports = {port.get("name") for port in container.get("ports", [])}
            problems += [f"{where}: port name {port['name']!r}" for port in container.get("ports", [])
                         if "name" in port and not PORT_NAME.match(port["name"])]
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                target = (container.get(probe, {}).get("httpGet") or container.get(probe, {}).get("tcpSocket") or {})
                if isinstance(target.get("port"), str) and target["port"] not in own_ports:
                    problems.append(f"{where}: {probe} port {target['port']!r} is not a port of the container")
            problems += [f"{where}: env {env['name']} reads a {source} without a name"
                         for env in container.get("env", []) for source in ("secretKeyRef", "configMapKeyRef")
                         if source in env.get("valueFrom", {}) and not env["valueFrom"][source].get("name")]
            for bound in ("requests", "limits"):
                problems += [f"{where}: resource name {name!r}" for name in container.get("resources", {}).get(bound, {})
                             if not RESOURCE_NAME.match(name)]
            problems += [f"{where}: fieldRef {env['valueFrom']['fieldRef']['fieldPath']}"
                         for env in container.get("env", []) if "fieldRef" in env.get("valueFrom", {})
                         and env["valueFrom"]["fieldRef"]["fieldPath"] not in FIELD_PATHS]
    for manifest in objects:
        strategy = {"Deployment": ("strategy", {"RollingUpdate", "Recreate"}),
                    "StatefulSet": ("updateStrategy", {"RollingUpdate", "OnDelete"}),
                    "DaemonSet": ("updateStrategy", {"RollingUpdate", "OnDelete"})}.get(manifest["kind"])
        if strategy and manifest["spec"].get(strategy[0], {}).get("type", "RollingUpdate") not in strategy[1]:
            problems.append(f"{describe(manifest)}: {strategy[0]} {manifest['spec'][strategy[0]]['type']}")
        ports = (manifest["spec"].get("ports", []) if manifest["kind"] == "Service" else
                 [p for rule in manifest["spec"].get("ingress", []) + manifest["spec"].get("egress", [])
                  for p in rule.get("ports", [])] if manifest["kind"] == "NetworkPolicy" else [])
        problems += [f"{manifest['kind']} {manifest['metadata']['name']}: protocol {p['protocol']}" for p in ports
                     if p.get("protocol", "TCP") not in PROTOCOLS]
        if manifest["kind"] == "NetworkPolicy":
            problems += [f"{describe(manifest)}: policy type {kind}" for kind in manifest["spec"].get("policyTypes", [])
                         if kind not in ("Ingress", "Egress")]
        if manifest["kind"] == "Service":
            problems += [f"Service {manifest['metadata']['name']}: port name {p['name']!r}" for p in ports
                         if "name" in p and not PORT_NAME.match(p["name"])]
        if manifest["kind"] == "HorizontalPodAutoscaler":
            for direction, rules in manifest["spec"].get("behavior", {}).items():
                if rules.get("selectPolicy", "Max") not in HPA_SELECT_POLICIES:
                    problems.append(f"{describe(manifest)}: {direction} selectPolicy {rules['selectPolicy']}")
                problems += [f"{describe(manifest)}: {direction} policy type {policy['type']}"
                             for policy in rules.get("policies", []) if policy["type"] not in HPA_POLICY_TYPES]
    assert problems == []


def test_the_dns_label_rule_refuses_what_the_api_server_refuses() -> None:
    assert [n for n in ("redis", "model-cache", "dshm", "a" * 63, "0") if not DNS_LABEL.match(n)] == []
    assert [n for n in ("DSHM", "a" * 64, "-tmp", "tmp-", "model_cache", "model.cache", "") if DNS_LABEL.match(n)] == []


@pytest.mark.parametrize("render", RENDERS)
def test_containers_volumes_and_mounts_name_what_the_pod_declares(render: str) -> None:
    """Container and volume names are unique DNS labels; each mount names a volume of the pod (or, in a
    StatefulSet, a claim template), and no container mounts two volumes at one path."""
    problems, mounts_checked = [], 0
    for workload, template in pod_templates(rendered(render)):
        pod = template["spec"]
        claims = {c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])}
        for what, names in (("container", [c["name"] for c in containers(pod)]),
                            ("volume", [v["name"] for v in pod.get("volumes", [])] + sorted(claims))):
            problems += [f"{describe(workload)}: {what} name {n!r}" for n in names if not DNS_LABEL.match(n)]
            problems += [f"{describe(workload)}: {what} {n} twice" for n in sorted(set(names)) if names.count(n) > 1]
        volumes = {v["name"] for v in pod.get("volumes", [])} | claims
        for container in containers(pod):
            paths = [m["mountPath"] for m in container.get("volumeMounts", [])]
            problems += [f"{describe(workload, container)}: two mounts at {p}" for p in sorted(set(paths))
                         if paths.count(p) > 1]
            for mount in container.get("volumeMounts", []):
                mounts_checked += 1
                if mount["name"] not in volumes:
                    problems.append(f"{describe(workload, container)} mounts {mount['name']}, not a volume of the pod")
    assert mounts_checked and problems == []


# Label keys: an optional DNS-subdomain prefix and "/", then a name part; values: empty or a name part, at most 63.
LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def label_problems(labels: dict[str, str]) -> list[str]:
    problems = []
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if (prefix and (len(prefix) > 253 or not LABEL_PREFIX.match(prefix))) or len(name) > 63 \
                or not LABEL_NAME.match(name):
            problems.append(f"key {key!r}")
        if len(value) > 63 or (value and not LABEL_NAME.match(value)):
            problems.append(f"value {value!r} of {key!r}")
    return problems


def test_the_label_rules_refuse_what_the_api_server_refuses() -> None:
    assert label_problems({"ha-ai-stack/redis-group": "a", "app.kubernetes.io/name": "redis", "tier": ""}) == []
    assert label_problems({"HA-AI-STACK/group": "a", "x/-name": "b", "ok": "a" * 64, "k": "-v"}) == [
        "key 'HA-AI-STACK/group'", "key 'x/-name'", f"value {'a' * 64!r} of 'ok'", "value '-v' of 'k'"]


def test_the_port_name_rule_refuses_what_the_api_server_refuses() -> None:
    assert [n for n in ("http", "metrics", "redis-bus", "h2c", "a" * 15, "p") if not PORT_NAME.match(n)] == []
    assert [n for n in ("METRICS", "a" * 16, "8080", "-redis", "redis-", "re--dis", "re_dis") if PORT_NAME.match(n)] == []


@pytest.mark.parametrize("render", RENDERS)
def test_every_label_key_and_value_is_one_the_api_server_takes(render: str) -> None:
    problems = []
    for manifest in rendered(render):
        problems += [f"{describe(manifest)}: {p}" for p in label_problems(manifest["metadata"].get("labels", {}))]
    for workload, template in pod_templates(rendered(render)):
        problems += [f"{describe(workload)} pods: {p}" for p in label_problems(template["metadata"].get("labels", {}))]
    assert problems == []


@pytest.mark.parametrize("render", RENDERS)
def test_the_namespace_enforces_warns_and_audits_the_restricted_level(render: str) -> None:
    """Lowercase level names only: PodSecurity admission refuses a namespace whose level it does not know."""
    [namespace] = [m for m in rendered(render) if m["kind"] == "Namespace"]
    levels = {key.rpartition("/")[2]: value for key, value in namespace["metadata"]["labels"].items()
              if key.startswith("pod-security.kubernetes.io/") and not key.endswith("-version")}
    assert levels == {"enforce": "restricted", "warn": "restricted", "audit": "restricted"}


@pytest.mark.parametrize("render", RENDERS)
def test_no_request_exceeds_its_limit(render: str) -> None:
    """The API server refuses a container whose request of a resource is above its limit of it."""
    problems = []
    for workload, template in pod_templates(rendered(render)):
        for container in containers(template["spec"]):
            requests, limits = (container.get("resources", {}).get(bound, {}) for bound in ("requests", "limits"))
            problems += [f"{describe(workload, container)}: {name} request {requests[name]} > limit {limits[name]}"
                         for name in requests.keys() & limits.keys()
                         if parse_quantity(requests[name]) > parse_quantity(limits[name])]
    assert problems == []


def test_the_quantity_parser_tells_milli_from_mega() -> None:
    assert parse_quantity("50m") < parse_quantity("100m") < parse_quantity("50M")


@pytest.mark.parametrize("render", RENDERS)
def test_env_values_expand_only_variables_defined_before_them(render: str) -> None:
    """The kubelet expands $(NAME) only from entries earlier in the list; a later or missing one stays literal."""
    problems = []
    for workload, template in pod_templates(rendered(render)):
        for container in containers(template["spec"]):
            defined: set[str] = set()
            for env in container.get("env", []):
                missing = set(VARIABLE.findall(env.get("value", ""))) - defined
                if missing:
                    problems.append(f"{describe(workload, container)}: {env['name']} uses {sorted(missing)}")
                defined.add(env["name"])
    assert problems == []


@pytest.mark.parametrize("render", RENDERS)
def test_every_file_a_probe_or_command_runs_from_a_config_map_is_in_it(render: str) -> None:
    objects = rendered(render)
    config_maps = {(m["metadata"]["namespace"], m["metadata"]["name"]): m.get("data", {})
                   for m in objects if m["kind"] == "ConfigMap"}
    checked, problems = 0, []
    for workload, template in pod_templates(objects):
        pod, namespace = template["spec"], workload["metadata"]["namespace"]
        mounted = {v["name"]: v["configMap"]["name"] for v in pod.get("volumes", []) if "configMap" in v}
        for container in containers(pod):
            mounts = {m["mountPath"].rstrip("/"): mounted[m["name"]] for m in container.get("volumeMounts", [])
                      if m["name"] in mounted}
            probes = [container.get(p, {}).get("exec", {}).get("command", [])
                      for p in ("startupProbe", "readinessProbe", "livenessProbe")]
            hooks = [container.get("lifecycle", {}).get(h, {}).get("exec", {}).get("command", [])
                     for h in ("preStop", "postStart")]
            for word in [w for words in [container.get("command", []), *probes, *hooks] for w in words]:
                folder, _, file = word.rpartition("/")
                if folder in mounts:
                    checked += 1
                    if file not in config_maps.get((namespace, mounts[folder]), {}):
                        problems.append(f"{describe(workload, container)} runs {word}, which ConfigMap "
                                        f"{mounts[folder]} does not have")
    assert checked and problems == []


def selected(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


@pytest.mark.parametrize("render", RENDERS)
def test_monitors_scrape_ports_their_targets_name(render: str) -> None:
    objects = rendered(render)
    pods = [(w["metadata"]["namespace"], t["metadata"]["labels"],
             {p["name"] for c in t["spec"]["containers"] for p in c.get("ports", []) if "name" in p})
            for w, t in pod_templates(objects)]
    services = [(s["metadata"]["namespace"], s["metadata"].get("labels", {}),
                 {p["name"] for p in s["spec"]["ports"] if "name" in p}) for s in objects if s["kind"] == "Service"]
    problems = []
    for monitor in objects:
        if monitor["kind"] not in ("PodMonitor", "ServiceMonitor"):
            continue
        spec = monitor["spec"]
        namespaces = spec.get("namespaceSelector", {}).get("matchNames", [monitor["metadata"]["namespace"]])
        targets = pods if monitor["kind"] == "PodMonitor" else services
        matching = [(labels, ports) for namespace, labels, ports in targets
                    if namespace in namespaces and selected(spec["selector"], labels)]
        # Prometheus keeps only the selected targets that name the port (others, such as admin Jobs, are dropped),
        # and each monitor is meant for one application: its alerts and target labels assume so.
        for endpoint in spec.get("podMetricsEndpoints") or spec.get("endpoints"):
            scraped = {labels.get("app.kubernetes.io/name") for labels, ports in matching if endpoint["port"] in ports}
            if len(scraped) != 1:
                problems.append(f"{monitor['kind']} {monitor['metadata']['name']}: port {endpoint['port']} is "
                                f"scraped from {sorted(map(str, scraped))}")
    assert problems == []


@pytest.mark.parametrize("render", RENDERS)
def test_autoscalers_scale_workloads_the_render_creates(render: str) -> None:
    objects = rendered(render)
    workloads = {(m["apiVersion"], m["kind"], m["metadata"].get("namespace"), m["metadata"]["name"]) for m in objects}
    problems = [f"{m['kind']} {m['metadata']['name']} scales a missing {m['spec']['scaleTargetRef']}"
                for m in objects if m["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")
                and (m["spec"]["scaleTargetRef"].get("apiVersion"), m["spec"]["scaleTargetRef"]["kind"],
                     m["metadata"]["namespace"], m["spec"]["scaleTargetRef"]["name"]) not in workloads]
    assert problems == []


@pytest.mark.parametrize("render", RENDERS)
def test_every_pod_allowed_any_egress_can_reach_cluster_dns(render: str) -> None:
    """Every pod here dials a Service, a peer or S3 by name; a NetworkPolicy that allows egress but not DNS
    leaves it unable to resolve any of them. Only the namespace's default-deny allows no egress at all."""
    dns = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                   "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
           "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    policies = [m for m in rendered(render) if m["kind"] == "NetworkPolicy" and "Egress" in m["spec"]["policyTypes"]]
    without = sorted(m["metadata"]["name"] for m in policies if dns not in m["spec"].get("egress", []))
    assert len(policies) >= 2 and without == ["default-deny"]
