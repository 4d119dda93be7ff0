"""A worker pod's scratch space (its emptyDir, the pool's `ephemeralStorage`) against the inputs
it must download: checked before FFmpeg starts (docs/large-files.md). The operator passes the
pool's limit to the worker in `SCRATCH_LIMIT_ENV`; the worker compares it (and the free space
of its work folder) with the probed size of each input it downloads.

Standard library only: the worker imports this on its way to FFmpeg."""

from __future__ import annotations

import re
from collections.abc import Mapping

SCRATCH_LIMIT_ENV = "SCRATCH_LIMIT"  # the pool's ephemeralStorage quantity, as written ("10Gi")

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([KMGTPE]i?|[kmunE]|e[0-9]+)?$")
_FACTORS = {
    "": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}


def parse_quantity(text: str) -> int:
    """Bytes of a Kubernetes quantity ("10Gi", "500M", "1e9", "1048576"); ValueError otherwise."""
    m = _QUANTITY.match(text.strip())
    if not m:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    number, suffix = float(m.group(1)), m.group(2) or ""
    if suffix.startswith("e"):
        return int(number * 10 ** int(suffix[1:]))
    if suffix in ("m", "u", "n"):
        raise ValueError(f"not a size in bytes: {text!r}")
    return int(number * _FACTORS[suffix])


def human(n: int) -> str:
    """1536 -> '1.5 KiB' (for messages; the exact byte count goes beside it)."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def scratch_shortfall(sizes: Mapping[str, int], limit: str | None, free: int | None) -> str | None:
    """Why the downloaded inputs (`sizes`: input name -> bytes) cannot fit the scratch space, or
    None when they fit. `limit` is the pool's ephemeralStorage quantity, `free` the bytes free
    where the work folder is."""
    need = sum(sizes.values())
    listed = ", ".join(f"{name} {human(n)} ({n} bytes)" for name, n in sorted(sizes.items(), key=lambda x: -x[1]))
    what = f"the inputs to download need {human(need)} ({need} bytes) of scratch space: {listed}"
    if limit:
        try:
            cap = parse_quantity(limit)
        except ValueError:
            cap = None
        if cap is not None and need > cap:
            return (f"scratch space too small: {what}; the pool's scratch (ephemeralStorage) is {limit} "
                    f"({cap} bytes). Run it on a pool with more ephemeral storage, or raise the pool's "
                    "ephemeralStorage")
    if free is not None and need > free:
        return (f"scratch space too small: {what}; only {human(free)} ({free} bytes) are free on the "
                "worker's scratch volume")
    return None
