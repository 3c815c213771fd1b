"""Participant images drawn straight from arrays: colour-mapped slices, overlays, one PNG.

The participant page's image figures (R2* slices, registration edges, label and flag
overlays) need no plotting library's layout: each panel is an axial slice mapped through a
256-entry colour table (the matplotlib colormap the figures always used, sampled as
matplotlib samples it), overlays are alpha-blended in numpy, and the panels are placed side by
side in one RGB mosaic written as one PNG. Text (panel titles, the colour scale with its
numeric range, the legend) is drawn by the page in HTML from the same numbers.

Every PNG carries its layout in a ``tEXt`` chunk ``ironmap`` (JSON): the panels' ids, titles,
slices and pixel boxes, the pixel size of a voxel, the colormap and its range. So the content
of a written figure can be checked by machine: the pixels of a panel reproduce its slice
through the colour table (:func:`panel_pixels`).

Arrays are 3-D in closest-RAS voxel order; slice ``[:, :, k]`` is shown with anterior up and
x to the right (the orientation of :func:`ironmap.report.figures.show_plane`).
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ironmap.report.colortables import LUT_HEX

#: entries of a colour table (matplotlib's default ``N`` for its named colormaps)
LUT_SIZE = 256
#: white, for NaN (no value) and the space between panels
WHITE = (255, 255, 255)
#: pixels between panels, and the band above each panel where the page writes its title
GAP = 6
TITLE_BAND = 20
#: a panel is drawn at least this many pixels wide (voxels repeated, never interpolated)
MIN_PANEL_PX = 180
#: PNG metadata key of the layout
META_KEY = "ironmap"
#: a colour written as ``#rrggbb``
_HEX6 = re.compile(r"#[0-9a-fA-F]{6}")


def lut(cmap: str) -> np.ndarray:
    """The colour table of a matplotlib colormap, as ``imshow`` samples it.

    Parameters
    ----------
    cmap : str
        A matplotlib colormap name (``gray``, ``magma``, ...).

    Returns
    -------
    ndarray of uint8, shape (256, 3)
        RGB of entry i = ``cmap(i, bytes=True)`` (i = 0..255), as matplotlib converts it.
    """
    stored = LUT_HEX.get(cmap)
    if stored is not None:  # the page's tables, stored: no matplotlib import
        return np.frombuffer(bytes.fromhex(stored), np.uint8).reshape(LUT_SIZE, 3).copy()
    from matplotlib import colormaps

    rgba = colormaps[cmap].resampled(LUT_SIZE)(np.arange(LUT_SIZE), bytes=True)
    return np.ascontiguousarray(rgba[:, :3], np.uint8)


def lut_index(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Colour-table entry of each value: ``floor((v - low) / (high - low) * 256)``, clipped.

    As matplotlib's ``Normalize`` + colormap lookup: values below ``low`` get entry 0, values
    at or above ``high`` entry 255. NaN gets -1 (not drawn).

    Parameters
    ----------
    values : ndarray
        Image values.
    low, high : float
        The range mapped onto the table (``high > low``).

    Returns
    -------
    ndarray of int16
        Entries 0..255, -1 where ``values`` is not finite.
    """
    v = np.asarray(values, np.float64)
    span = float(high) - float(low) if high > low else np.inf
    with np.errstate(invalid="ignore"):
        idx = np.floor((v - float(low)) / span * LUT_SIZE)
    idx = np.clip(np.nan_to_num(idx, nan=-1.0, posinf=LUT_SIZE - 1.0, neginf=0.0),
                  -1, LUT_SIZE - 1).astype(np.int16)
    idx[np.isfinite(v) & (idx < 0)] = 0
    idx[~np.isfinite(v)] = -1
    return idx


def orient(plane: np.ndarray) -> np.ndarray:
    """An axial plane ``(nx, ny)`` in display order: rows from anterior (top) to posterior.

    Parameters
    ----------
    plane : ndarray of shape (nx, ny)
        One axial slice in RAS voxel order.

    Returns
    -------
    ndarray of shape (ny, nx)
        ``plane.T`` upside down (y up, x to the right).
    """
    return np.asarray(plane).T[::-1]


def voxel_repeat(shape: tuple[int, int], voxel_sizes: Sequence[float] = (1.0, 1.0),
                 min_px: int = MIN_PANEL_PX) -> tuple[int, int]:
    """Integer pixels per voxel along x and y: at least ``min_px`` wide, voxel aspect kept.

    Parameters
    ----------
    shape : (int, int)
        In-plane shape (nx, ny).
    voxel_sizes : (float, float), optional
        Voxel size along x and y (mm).
    min_px : int, optional
        Smallest panel width in pixels.

    Returns
    -------
    (int, int)
        Pixels per voxel along x and y.
    """
    vx, vy = (float(v) for v in voxel_sizes[:2])
    base = min(vx, vy) if min(vx, vy) > 0 else 1.0
    ax, ay = vx / base, vy / base
    s = max(1, int(np.ceil(min_px / max(1.0, shape[0] * ax))))
    return max(1, int(round(ax * s))), max(1, int(round(ay * s)))


def upscale(arr: np.ndarray, rx: int, ry: int) -> np.ndarray:
    """Repeat each pixel ``ry`` times down and ``rx`` times across (nearest neighbour).

    Parameters
    ----------
    arr : ndarray of shape (h, w, ...)
        Display-ordered image.
    rx, ry : int
        Repeats along columns and rows.

    Returns
    -------
    ndarray of shape (h * ry, w * rx, ...)
        The enlarged image.
    """
    out = np.repeat(arr, ry, axis=0) if ry > 1 else arr
    return np.repeat(out, rx, axis=1) if rx > 1 else out


def colorize(plane: np.ndarray, cmap: str, low: float, high: float) -> np.ndarray:
    """An axial plane through a colour table, in display order; NaN white.

    Parameters
    ----------
    plane : ndarray of shape (nx, ny)
        Values (NaN: not drawn).
    cmap : str
        Matplotlib colormap name.
    low, high : float
        Range mapped onto the table.

    Returns
    -------
    ndarray of uint8, shape (ny, nx, 3)
        RGB.
    """
    idx = orient(lut_index(plane, low, high))
    table = np.vstack([lut(cmap), np.array([WHITE], np.uint8)])  # entry -1: white
    return table[idx]


def hex_rgb(color: str) -> np.ndarray:
    """``#rrggbb`` as an RGB float array (0-255).

    Parameters
    ----------
    color : str
        Hex colour.

    Returns
    -------
    ndarray of float, shape (3,)
        Red, green, blue.
    """
    if _HEX6.fullmatch(color):  # as matplotlib's to_rgb reads "#rrggbb": byte / 255
        return np.asarray([int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)], float) * 255
    from matplotlib.colors import to_rgb

    return np.asarray(to_rgb(color), float) * 255


def blend(rgb: np.ndarray, mask: np.ndarray, color: str, alpha: float) -> np.ndarray:
    """Paint ``color`` with opacity ``alpha`` over the pixels of ``mask`` (in place).

    Parameters
    ----------
    rgb : ndarray of uint8, shape (h, w, 3)
        The image.
    mask : ndarray of bool, shape (h, w)
        Pixels to paint.
    color : str
        Hex colour.
    alpha : float
        Opacity (0-1): ``out = (1 - alpha) * rgb + alpha * color``, rounded.

    Returns
    -------
    ndarray of uint8
        ``rgb``.
    """
    if np.any(mask):
        base = rgb[mask].astype(float)
        rgb[mask] = np.round((1.0 - alpha) * base + alpha * hex_rgb(color)).astype(np.uint8)
    return rgb


def outline(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a 2-D mask: in the mask with a 4-neighbour outside it.

    Parameters
    ----------
    mask : ndarray of bool, shape (h, w)
        The mask.

    Returns
    -------
    ndarray of bool, shape (h, w)
        Its one-pixel inner outline.
    """
    m = np.asarray(mask, bool)
    p = np.pad(m, 1, mode="edge")
    inner = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m & ~inner


@dataclass
class Panel:
    """One panel: display-ordered RGB (already enlarged), its layer id, title and slice."""

    id: str
    title: str
    rgb: np.ndarray
    slice: int | None = None


@dataclass
class Colorbar:
    """The colour scale shown under a figure: colormap, the range it spans, its label."""

    cmap: str
    low: float
    high: float
    label: str = "R2* (s⁻¹)"

    def strip_uri(self) -> str:
        """The colour table as a 256 x 1 PNG data URI (the page stretches it).

        Returns
        -------
        str
            ``data:image/png;base64,...``.
        """
        return "data:image/png;base64," + base64.b64encode(
            encode_png(lut(self.cmap)[None, :, :])).decode("ascii")


@dataclass
class RasterFigure:
    """Panels drawn from arrays, laid out in rows, with the text the page writes around them.

    ``legend`` holds (name, hex colour) pairs; ``scale`` the pixels per voxel (x, y).
    """

    panels: list[Panel]
    title: str = ""
    legend: list[tuple[str, str]] = field(default_factory=list)
    colorbar: Colorbar | None = None
    ncol: int | None = None
    scale: tuple[int, int] = (1, 1)

    def layout(self) -> tuple[np.ndarray, list[dict]]:
        """The mosaic and the box of each panel.

        Returns
        -------
        mosaic : ndarray of uint8, shape (H, W, 3)
            White background, a title band above each row.
        boxes : list of dict
            Per panel: ``id``, ``title``, ``slice`` and ``box`` = [x, y, width, height] in
            pixels of the mosaic (the image, without its title band).
        """
        if not self.panels:
            raise ValueError("a figure without panels")
        ncol = self.ncol or len(self.panels)
        rows = [self.panels[i:i + ncol] for i in range(0, len(self.panels), ncol)]
        col_w = [max(p.rgb.shape[1] for p in self.panels[c::ncol]) for c in range(ncol)]
        row_h = [max(p.rgb.shape[0] for p in r) for r in rows]
        width = sum(col_w) + GAP * (ncol - 1)
        height = sum(h + TITLE_BAND for h in row_h) + GAP * (len(rows) - 1)
        mosaic = np.full((height, width, 3), 255, np.uint8)
        boxes, y = [], 0
        for r, row in enumerate(rows):
            x = 0
            for c, p in enumerate(row):
                h, w = p.rgb.shape[:2]
                top = y + TITLE_BAND
                mosaic[top:top + h, x:x + w] = p.rgb
                boxes.append({"id": p.id, "title": p.title, "slice": p.slice,
                              "box": [x, top, w, h]})
                x += col_w[c] + GAP
            y += row_h[r] + TITLE_BAND + GAP
        return mosaic, boxes

    def metadata(self, boxes: list[dict]) -> dict:
        """The layout and scale written into the PNG.

        Parameters
        ----------
        boxes : list of dict
            From :meth:`layout`.

        Returns
        -------
        dict
            ``panels``, ``scale``, ``title``, ``legend`` and the colour scale (``colormap``,
            ``range``) when there is one.
        """
        meta = {"panels": boxes, "scale": list(self.scale), "title": self.title,
                "legend": [list(x) for x in self.legend], "title_band": TITLE_BAND}
        if self.colorbar is not None:
            meta.update(colormap=self.colorbar.cmap,
                        range=[self.colorbar.low, self.colorbar.high])
        return meta

    def render(self) -> tuple[bytes, dict]:
        """The PNG (layout in its ``ironmap`` text chunk) and the layout.

        Returns
        -------
        png : bytes
            File content.
        meta : dict
            :meth:`metadata` plus ``width`` and ``height`` of the mosaic.
        """
        mosaic, boxes = self.layout()
        meta = self.metadata(boxes)
        meta.update(width=int(mosaic.shape[1]), height=int(mosaic.shape[0]))
        return encode_png(mosaic, {META_KEY: json.dumps(meta, sort_keys=True)}), meta


def encode_png(rgb: np.ndarray, text: dict[str, str] | None = None) -> bytes:
    """An RGB array as PNG bytes (deterministic: no time or software stamp).

    Parameters
    ----------
    rgb : ndarray of uint8, shape (h, w, 3)
        The image.
    text : dict of str to str, optional
        ``tEXt`` chunks.

    Returns
    -------
    bytes
        The PNG file.
    """
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for k, v in (text or {}).items():
        info.add_text(k, v)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, np.uint8), "RGB").save(
        buf, format="PNG", pnginfo=info, compress_level=6)
    return buf.getvalue()


def read_png(data: bytes) -> tuple[np.ndarray, dict]:
    """Pixels and layout of a PNG written by :meth:`RasterFigure.render`.

    Parameters
    ----------
    data : bytes
        PNG file content.

    Returns
    -------
    rgb : ndarray of uint8, shape (H, W, 3)
        The pixels.
    meta : dict
        The ``ironmap`` layout (empty when absent).
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        rgb = np.asarray(im.convert("RGB"))
        meta = json.loads(im.text.get(META_KEY, "{}"))
    return rgb, meta


def panel_pixels(rgb: np.ndarray, meta: dict, panel_id: str) -> np.ndarray:
    """The pixels of one panel, one per voxel (the top-left pixel of each repeat).

    Parameters
    ----------
    rgb : ndarray of uint8, shape (H, W, 3)
        A mosaic (:func:`read_png`).
    meta : dict
        Its layout.
    panel_id : str
        The panel's id (e.g. ``image-r2star``).

    Returns
    -------
    ndarray of uint8, shape (nx, ny, 3)
        The panel in the slice's voxel order (RAS, x then y): ``panel_pixels(...)[x, y]`` is
        the colour of voxel (x, y).
    """
    box = next(p["box"] for p in meta["panels"] if p["id"] == panel_id)
    x0, y0, w, h = box
    rx, ry = meta["scale"]
    crop = rgb[y0:y0 + h:ry, x0:x0 + w:rx]
    return crop[::-1].transpose(1, 0, 2)
