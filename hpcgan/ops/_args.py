"""Argument parsing shared by the ops: integers and integer pairs.

``bool`` is not an integer here (``up=True`` is an error, not 1), in every op.
"""

from __future__ import annotations

import numbers


def is_int(v) -> bool:
    """True for Python and numpy integers, False for bool."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def int_pair(v, name: str) -> tuple[int, int]:
    """``v`` as ``(x, y)``: an int (both) or a pair ``[x, y]`` of ints; ValueError naming ``name`` otherwise."""
    if is_int(v):
        return int(v), int(v)
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(is_int(e) for e in v):
        return int(v[0]), int(v[1])
    raise ValueError(f"{name} must be an int or a pair [x, y] of ints, got {v!r}")
