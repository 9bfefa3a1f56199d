"""How an eval setting (scales + left-right flip) is written: every format, defined once.

A setting appears in the registry (``zoo info``), in bench and eval result names on disk, and in printed
tables. Result names are keys: ``zoo report`` matches bench and eval results to registry rows by them, so
they must never be built anywhere else.
"""

from __future__ import annotations

from typing import Sequence

SINGLE = (1.0,)
SINGLE_KEY = "single"         # setting_key of SINGLE without flip
SINGLE_SLUG = "single-scale"  # setting_slug of SINGLE without flip


def is_single(scales: Sequence[float], flip: bool) -> bool:
    """Scale 1 without flip: the frozen graph as exported."""
    return tuple(scales) == SINGLE and not flip


def scale_list(scales: Sequence[float], sep: str = ",") -> str:
    """``0.5,0.75,1`` (shortest form of each scale)."""
    return sep.join(f"{s:g}" for s in scales)


def _even_step(scales: Sequence[float]) -> float | None:
    step = round(scales[1] - scales[0], 10)
    if step > 0 and all(abs((b - a) - step) < 1e-9 for a, b in zip(scales, scales[1:])):
        return step
    return None


def scales_notation(scales: Sequence[float]) -> str:
    """The seed's compact form: ``0.5:0.25:1.75`` for three or more evenly spaced scales, else ``0.5,1``."""
    if len(scales) >= 3:
        step = _even_step(scales)
        if step is not None:
            return f"{scales[0]:g}:{step:g}:{scales[-1]:g}"
    return scale_list(scales)


def scales_label(scales: Sequence[float]) -> str:
    """``scale 1`` or ``scales 0.75,1,1.25``."""
    return f"{'scales' if len(scales) > 1 else 'scale'} {scale_list(scales)}"


def flip_label(flip: bool) -> str:
    """``flip`` or ``no flip``."""
    return "flip" if flip else "no flip"


def describe_scales(scales: Sequence[float], flip: bool) -> str:
    """``scale 1, no flip`` or ``scales 0.5-1.75 (6), flip``: an eval setting in a few words."""
    if len(scales) == 1:
        text = f"scale {scales[0]:g}"
    else:
        text = f"scales {scales[0]:g}-{scales[-1]:g} ({len(scales)})"
    return f"{text}, {flip_label(flip)}"


def setting_key(scales: Sequence[float], flip: bool) -> str:
    """The key of a bench result and of a report cell: ``single`` or ``s0.75-1-1.25-flip``."""
    if is_single(scales, flip):
        return SINGLE_KEY
    return f"s{scale_list(scales, '-')}{'-flip' if flip else ''}"


def setting_slug(scales: Sequence[float], flip: bool) -> str:
    """The folder of an eval result: ``single-scale`` or ``scales-0.75-1-1.25-flip``."""
    if is_single(scales, flip):
        return SINGLE_SLUG
    return f"scales-{scale_list(scales, '-')}{'-flip' if flip else ''}"
