"""Reading and writing sizes: bytes as users type them ('512MiB', '1.5GB')."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int | None:
    """'512MiB', '1.5GB', '300000000' -> bytes (KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024);
    None when the text is not a size."""
    match = _SIZE.match(text)
    if not match:
        return None
    number, unit = float(match.group(1)), (match.group(2) or "").lower().rstrip("b")
    if not unit:
        return int(number)
    base = 1024 if unit.endswith("i") else 1000
    return int(number * base ** ("kmgt".index(unit[0]) + 1))


def format_mib(size: float) -> str:
    """Bytes as whole MiB, for tables and messages; sizes under 1 MiB in KiB or bytes, never "0 MiB"."""
    if size >= 2**20 or size == 0:
        return f"{size / 2**20:,.0f} MiB"
    return f"{size / 2**10:,.1f} KiB" if size >= 2**10 else plural(int(size), "byte")


def plural(count: int, noun: str) -> str:
    """'1 trial', '2 trials'."""
    return f"{count:,} {noun}" + ("" if count == 1 else "s")
