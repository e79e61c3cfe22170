"""Kubernetes resource quantities: ``500m`` CPUs, ``64Mi`` of memory, and back.

A quantity is a number with an optional suffix: binary (``Ki Mi Gi Ti Pi
Ei``), decimal (``k M G T P E``), milli (``m``), or an exponent
(``1e3``). CPU is read as a number of CPUs (``500m`` = 0.5), memory as
bytes (rounded up, as Kubernetes does for fractional bytes).
``format_cpu``/``format_memory`` write the shortest exact form, the way
``kube generate`` should: ``500m``, ``2``, ``64Mi``, ``1Gi``, ``1000``.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from skiff.runtime.kube.model import Where

_QUANTITY = re.compile(
    r"\A([+]?(?:\d+(?:\.\d*)?|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?\d+)?\Z"
)
_FACTORS = {
    None: Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}


def parse_quantity(value: object, where: Where) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise where.error(f"{value!r} is not a quantity", "e.g. 500m, 2, 64Mi, 1Gi")
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if match is None:
        raise where.error(f"{text!r} is not a quantity", "e.g. 500m, 2, 64Mi, 1Gi")
    number, suffix = match.groups()
    try:
        amount = Decimal(number)
    except InvalidOperation:
        raise where.error(f"{text!r} is not a quantity") from None
    if suffix and suffix[0] in "eE":
        return amount * (Decimal(10) ** int(suffix[1:]))
    return amount * _FACTORS[suffix]


def parse_cpu(value: object, where: Where) -> float:
    amount = parse_quantity(value, where)
    if amount <= 0:
        raise where.error(f"{value!r}: a CPU limit must be more than 0")
    return float(amount)


def parse_memory(value: object, where: Where) -> int:
    from skiff.runtime.specgen.limits import MIN_MEMORY

    amount = math.ceil(parse_quantity(value, where))
    if amount < MIN_MEMORY:
        raise where.error(f"{value!r} is below the smallest memory limit, 6Mi")
    return amount


def format_cpu(cpus: float) -> str:
    millis = round(cpus * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def format_memory(size: int) -> str:
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        factor = int(_FACTORS[suffix])
        if size >= factor and size % factor == 0:
            return f"{size // factor}{suffix}"
    return str(size)
