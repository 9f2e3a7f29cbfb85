"""The Kubernetes name and quantity rules, at their boundaries, with the exact messages users see."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ha_ai_stack import names, quantity

LABEL_KEY_RULE = ("an optional DNS-subdomain prefix and '/', then letters, digits, '-', '_' and '.', starting and "
                  "ending with a letter or digit")


@pytest.mark.parametrize(("check", "value", "message"), [
    (names.dns_label, "", "must be a non-empty DNS label"),
    (names.dns_label, None, "must be a non-empty DNS label"),
    (names.dns_label, 7, "must be a non-empty DNS label"),
    (names.dns_label, "a" * 64, f"{'a' * 64!r} is 64 characters; a DNS label has at most 63"),
    (names.label_value, None, "must be a label value (a string)"),
    (names.label_key, "", "must be a non-empty label key"),
    (names.label_key, 5, "must be a non-empty label key"),
    (names.label_key, "Bad_Prefix/name", f"'Bad_Prefix/name' is not a valid label key: {LABEL_KEY_RULE}"),
    (names.label_key, "example.com/" + "n" * 64, f"{'example.com/' + 'n' * 64!r} is not a valid label key: "
                                                 f"{LABEL_KEY_RULE}"),
    (names.label_key, "-name", f"'-name' is not a valid label key: {LABEL_KEY_RULE}"),
    (names.env_var_name, "E" * 32769, f"{'E' * 32769!r} is 32769 characters; a env var name has at most 32768"),
])
def test_bad_names_get_the_exact_message(check, value, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError) as error:
        check(value)
    assert str(error.value) == message


@pytest.mark.parametrize(("check", "value"), [
    (names.dns_label, "a" * 63),
    (names.label_value, ""),  # an empty label value is valid
    (names.label_value, "v" * 63),
    (names.label_key, "example.com/" + "n" * 63),
    (names.label_key, "n" * 63),
    (names.env_var_name, "E" * 32768),
])
def test_names_at_the_limit_pass_unchanged(check, value) -> None:  # type: ignore[no-untyped-def]
    assert check(value) == value


@pytest.mark.parametrize(("text", "message"), [
    (5, "5 is not a Kubernetes quantity (examples: 500m, 2, 512Mi, 8Gi)"),
    (None, "None is not a Kubernetes quantity (examples: 500m, 2, 512Mi, 8Gi)"),
    ("8 GB", "'8 GB' is not a Kubernetes quantity (examples: 500m, 2, 512Mi, 8Gi)"),
    ("0", "'0' must be greater than zero"),
    ("0Gi", "'0Gi' must be greater than zero"),
])
def test_bad_quantities_get_the_exact_message(text, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError) as error:
        quantity.positive_quantity(text)
    assert str(error.value) == message


@pytest.mark.parametrize(("text", "value"), [("1m", Decimal("0.001")), ("1", Decimal(1)), (" 2Ki ", Decimal(2048)),
                                             ("1.5G", Decimal(1_500_000_000))])
def test_the_smallest_positive_quantities_pass_and_parse_exactly(text: str, value: Decimal) -> None:
    assert quantity.positive_quantity(text) == text
    assert quantity.parse_quantity(text) == value
