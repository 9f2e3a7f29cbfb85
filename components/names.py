"""Kubernetes name rules, in one place: what the API server refuses, checked before anything is rendered.

kubernetes-validate checks the OpenAPI schema, which says nothing about these: DNS-1123 names, label
syntax, env var names and Secret keys are checked by the API server's own validation. Every field that
reaches a manifest goes through one of these checks, from the stack config and from the Python API
alike, with the same wording. Limits that our own suffixes shrink (a StatefulSet's pods and revision
label, a Job's name label, a CronJob's Job names) are computed here, from the worst case.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")

DNS_LABEL_MAX = 63
DNS_SUBDOMAIN_MAX = 253
LABEL_VALUE_MAX = 63
# A StatefulSet's pods carry `controller-revision-hash: <name>-<hash>` (hash up to 10 characters) as a label.
STATEFULSET_NAME_MAX = LABEL_VALUE_MAX - 11
# A CronJob's Jobs are named `<name>-<minutes since epoch>` (up to 11 characters), and a Job's name is a label.
CRONJOB_NAME_MAX = 52
HASH_SUFFIX = 11  # "-" + 10 hex digits: our content-named objects


def _check(value: str, pattern: re.Pattern[str], limit: int, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty {what}")
    if len(value) > limit:
        raise ValueError(f"{value!r} is {len(value)} characters; a {what} has at most {limit}")
    if not pattern.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid {what}: {_RULES[what]}")
    return value


_RULES = {
    "DNS label": "lowercase letters, digits and '-', starting and ending with a letter or digit",
    "DNS-1035 label": "lowercase letters, digits and '-', starting with a letter and ending with a letter or digit",
    "DNS subdomain": "lowercase letters, digits, '-' and '.', each part starting and ending with a letter or digit",
    "label value": "letters, digits, '-', '_' and '.', starting and ending with a letter or digit (or empty)",
    "label key": "an optional DNS-subdomain prefix and '/', then letters, digits, '-', '_' and '.', "
                 "starting and ending with a letter or digit",
    "env var name": "letters, digits, '_', '-' and '.', not starting with a digit",
    "Secret or ConfigMap key": "letters, digits, '-', '_' and '.'",
}


def dns_label(value: str, limit: int = DNS_LABEL_MAX) -> str:
    """A namespace, a Service or a pod hostname: RFC 1123 label."""
    return _check(value, _DNS_LABEL, limit, "DNS label")


def dns_1035_label(value: str, limit: int = DNS_LABEL_MAX) -> str:
    """A Service name (the API server wants RFC 1035: it must start with a letter)."""
    return _check(value, _DNS_1035_LABEL, limit, "DNS-1035 label")


def dns_subdomain(value: str, limit: int = DNS_SUBDOMAIN_MAX) -> str:
    """Most object names: Secret, ConfigMap, PriorityClass, StorageClass."""
    return _check(value, _DNS_SUBDOMAIN, limit, "DNS subdomain")


def label_value(value: str) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a label value (a string)")
    return _check(value, _LABEL_VALUE, LABEL_VALUE_MAX, "label value") if value else value


def label_key(value: str) -> str:
    """``[prefix/]name``: the prefix a DNS subdomain, the name at most 63 characters."""
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty label key")
    prefix, _, name = value.rpartition("/")
    if prefix:
        try:
            dns_subdomain(prefix)
        except ValueError:
            raise ValueError(f"{value!r} is not a valid label key: {_RULES['label key']}") from None
    if len(name) > DNS_LABEL_MAX or not _LABEL_NAME.fullmatch(name):
        raise ValueError(f"{value!r} is not a valid label key: {_RULES['label key']}")
    return value


def env_var_name(value: str) -> str:
    return _check(value, _ENV_NAME, 32768, "env var name")


def config_key(value: str) -> str:
    return _check(value, _CONFIG_KEY, DNS_SUBDOMAIN_MAX, "Secret or ConfigMap key")


def labels(values: Mapping[str, str]) -> Mapping[str, str]:
    """Every key and value of a label map."""
    for key, value in values.items():
        label_key(key)
        try:
            label_value(value)
        except ValueError as error:
            raise ValueError(f"label {key}: {error}") from None
    return values


def annotation_keys(values: Mapping[str, str]) -> Mapping[str, str]:
    for key in values:
        label_key(key)
    return values


def each(check: Callable[[str], str]) -> Callable[[list[str]], list[str]]:
    """A list validator from a single-value check."""
    def validate(values: list[str]) -> list[str]:
        for value in values:
            check(value)
        return values
    return validate
