"""Read what a written figure contains: SVG groups by id, points per group, PNG panels."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

SVG = "{http://www.w3.org/2000/svg}"


def svg_groups(svg: bytes | str | Path) -> dict[str, ET.Element]:
    """``gid`` -> element of every SVG group with an id."""
    if isinstance(svg, Path):
        svg = svg.read_bytes()
    root = ET.fromstring(svg)
    return {g.get("id"): g for g in root.iter(f"{SVG}g") if g.get("id")}


def n_points(group: ET.Element) -> int:
    """Markers drawn in a group (matplotlib writes one ``<use>`` per marker)."""
    return len(list(group.iter(f"{SVG}use")))


def points_by_prefix(svg, prefix: str) -> dict[str, int]:
    """Points per group id starting with ``prefix`` (prefix removed from the keys)."""
    return {k[len(prefix):]: n_points(g) for k, g in svg_groups(svg).items()
            if k.startswith(prefix)}


def png_panel_ids(png: Path) -> list[str]:
    """Ids of the panels of an array-drawn PNG (its ``ironmap`` layout chunk)."""
    from ironmap.report.raster import read_png

    return [p["id"] for p in read_png(png.read_bytes())[1].get("panels", [])]
