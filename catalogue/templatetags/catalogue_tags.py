"""Small presentation helpers for the catalogue pages."""

from __future__ import annotations

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

register = template.Library()

CHANNEL_COLOURS = {"r": "#d1495b", "g": "#2e8b57", "b": "#3a6ea5"}


@register.simple_tag
def histogram_svg(histogram: dict, width: int = 320, height: int = 110) -> SafeString | str:
    """The image's RGB colour histogram as an inline SVG: one translucent area per channel."""
    if not histogram:
        return ""
    peak = max((max(values) for values in histogram.values() if values), default=0) or 1.0
    paths = []
    for channel in ("r", "g", "b"):
        values = histogram.get(channel) or []
        if not values:
            continue
        step = width / max(1, len(values) - 1)
        points = " ".join(
            f"{i * step:.1f},{height - (v / peak) * (height - 4):.1f}" for i, v in enumerate(values)
        )
        paths.append((f"0,{height} {points} {width},{height}", CHANNEL_COLOURS[channel]))
    polygons = format_html_join(
        "",
        '<polygon points="{}" fill="{}" fill-opacity="0.35" stroke="{}" stroke-width="1"/>',
        ((pts, colour, colour) for pts, colour in paths),
    )
    return format_html(
        '<svg class="histogram" viewBox="0 0 {} {}" role="img" aria-label="RGB colour histogram" '
        'preserveAspectRatio="none">{}</svg>',
        width,
        height,
        polygons,
    )


@register.filter
def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * float(value):.0f}%"


@register.filter
def lookup(mapping: dict, key: object) -> object:
    return mapping.get(key) if mapping else None
