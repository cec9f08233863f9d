"""Kubernetes resource quantities ("500m", "2", "1Gi", "1e3"), parsed to exact fractions.

The runner compares a job's resource request against the configured maximum
(``cpu_limit_overwrite_max_allowed`` and friends) and a request against its
limit before the API server does, so it can name the variable or config key at
fault. Comparisons must be exact ("1000m" equals "1", "1Gi" is more than
"1G"), hence :class:`fractions.Fraction` rather than floats.
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["QuantityError", "parse_quantity"]

# <signedNumber><suffix>, as in k8s.io/apimachinery/pkg/api/resource.
_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<si>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|[eE](?P<exp>[+-]?\d+))?$"
)

_SUFFIX: dict[str, Fraction] = {
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}

# Kubernetes refuses exponents outside this range; it also keeps us from
# building astronomically large integers out of "1e999999999".
_MAX_EXPONENT = 60


class QuantityError(ValueError):
    """Not a Kubernetes quantity. The message quotes the offending text and shows valid examples."""


def parse_quantity(text: str) -> Fraction:
    """The exact value of a quantity such as ``"500m"`` (= 1/2), ``"1Gi"`` or ``"1e3"``.

    Raises :class:`QuantityError` for anything the API server would reject,
    including negative values (no resource may be negative).
    """
    match = _QUANTITY.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise QuantityError(
            f"{text!r} is not a Kubernetes quantity (examples: 500m, 2, 1.5, 512Mi, 1Gi, 1e3)"
        )
    value = Fraction(match["number"])
    if match["si"]:
        value *= _SUFFIX[match["si"]]
    elif match["exp"] is not None:
        exponent = int(match["exp"])
        if abs(exponent) > _MAX_EXPONENT:
            raise QuantityError(f"{text!r}: the exponent is out of range")
        value *= Fraction(10) ** exponent
    if value < 0:
        raise QuantityError(f"{text!r}: a resource quantity cannot be negative")
    return value
