"""Quantities users type on the command line: memory sizes."""

from __future__ import annotations

import math

from sciml.errors import UsageError


def parse_bytes(text: str) -> float:
    """``"80GB"``, ``"141 GiB"``, ``"80e9"`` -> bytes (GB = 1e9, GiB = 2**30)."""
    s = text.strip().replace(" ", "")
    units = {"GIB": 2.0**30, "GB": 1e9, "MIB": 2.0**20, "MB": 1e6, "TB": 1e12, "TIB": 2.0**40}
    for unit, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if s.upper().endswith(unit):
            s, scale = s[: -len(unit)], factor
            break
    else:
        scale = 1.0
    try:
        value = float(s) * scale
    except ValueError:
        raise UsageError(f"cannot read a memory size from {text!r}; write e.g. 80GB or 141GiB") from None
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"memory size must be positive, got {text!r}")
    return value
