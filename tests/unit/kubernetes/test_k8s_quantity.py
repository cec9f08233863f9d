"""Kubernetes quantities, parsed exactly, so maxima and limits compare like the API server does."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kuberunner.util.quantity import QuantityError, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2", Fraction(2)),
        ("500m", Fraction(1, 2)),
        ("1.5", Fraction(3, 2)),
        (".5", Fraction(1, 2)),
        ("1.", Fraction(1)),
        ("+3", Fraction(3)),
        ("100n", Fraction(1, 10**7)),
        ("250u", Fraction(1, 4000)),
        ("1k", Fraction(1000)),
        ("512Mi", Fraction(512 * 2**20)),
        ("1Gi", Fraction(2**30)),
        ("1G", Fraction(10**9)),
        ("2Ti", Fraction(2 * 2**40)),
        ("1E", Fraction(10**18)),
        ("1Ei", Fraction(2**60)),
        ("1e3", Fraction(1000)),
        ("1E3", Fraction(1000)),
        ("25e-2", Fraction(1, 4)),
        (" 1Gi ", Fraction(2**30)),
    ],
)
def test_parse(text: str, value: Fraction) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "text", ["", "abc", "1.2.3", "1 Gi", "1gi", "1KB", "Gi", "-1", "-500m", "1e999", "0x10", "1e"]
)
def test_not_a_quantity(text: str) -> None:
    with pytest.raises(QuantityError) as caught:
        parse_quantity(text)
    assert repr(text) in str(caught.value)


def test_equal_amounts_in_different_units_compare_equal() -> None:
    assert parse_quantity("1000m") == parse_quantity("1")
    assert parse_quantity("1024Ki") == parse_quantity("1Mi")
    assert parse_quantity("1Gi") > parse_quantity("1G")
    assert parse_quantity("1e9") == parse_quantity("1G")


_SUFFIXES: dict[str, int | Fraction] = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "m": Fraction(1, 1000),
}


@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(sorted(_SUFFIXES)))
def test_integer_with_suffix(number: int, suffix: str) -> None:
    assert parse_quantity(f"{number}{suffix}") == number * _SUFFIXES[suffix]


@given(st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False, allow_infinity=False))
def test_decimal_text(number: Decimal) -> None:
    assert parse_quantity(str(number)) == Fraction(str(number))
