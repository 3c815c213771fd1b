"""Write one figure of a report page: its files and what the page shows of it.

A figure job (:class:`~ironmap.report.figures.FigureJob`) builds a matplotlib figure (PNG +
SVG), an array-drawn figure (one PNG, text in the page) or an SVG written as text; a failing
figure becomes a message on the page, never an error. Used by the study report, the
participant pages (:mod:`ironmap.workflows.report`) and the repeated-scan section
(:mod:`ironmap.workflows.repeated`).
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path

from ironmap.io.atomic import write_bytes
from ironmap.report import html
from ironmap.report.figures import FigureJob, display_width, render_figure
from ironmap.report.pageimages import SvgFigure
from ironmap.report.raster import RasterFigure

log = logging.getLogger(__name__)


def realise(job: FigureJob, fig_dir: Path, rel_to: Path) -> html.FigureView:
    """Build, render and write one figure (PNG + SVG); errors become the view's message.

    Parameters
    ----------
    job : FigureJob
        The figure.
    fig_dir : pathlib.Path
        Where its files go.
    rel_to : pathlib.Path
        Folder the page links are relative to.

    Returns
    -------
    FigureView
        Title, caption, files and the inlined PNG, or the error.
    """
    view = html.FigureView(job.id, job.title, job.caption)
    try:
        fig = job.build()
        if isinstance(fig, RasterFigure):  # drawn from arrays: one PNG, text in the page
            return _realise_raster(view, fig, fig_dir / f"{job.stem}.png", rel_to)
        if isinstance(fig, SvgFigure):  # written as SVG text
            svg = fig.markup.encode()
            view.files.append(str(write_bytes(fig_dir / f"{job.stem}.svg", svg)
                                  .relative_to(rel_to)))
            view.data_uri = "data:image/svg+xml;base64," + base64.b64encode(svg).decode()
            view.width = fig.width
            return view
        data = render_figure(fig)
        for fmt, blob in data.items():
            path = write_bytes(fig_dir / f"{job.stem}.{fmt}", blob)
            view.files.append(str(path.relative_to(rel_to)))
        view.data_uri = html.png_data_uri(data["png"])
        view.width = display_width(fig)
    except Exception as exc:  # a failing figure never stops the report
        view.error = str(exc) or type(exc).__name__
        log.warning("figure %s (%s) failed: %s", job.id, fig_dir, view.error,
                    exc_info=not isinstance(exc, ValueError))
    return view


def _realise_raster(view: html.FigureView, fig: RasterFigure, path: Path,
                    rel_to: Path) -> html.FigureView:
    """Write an array-drawn figure's PNG and give the page its titles, scale and legend."""
    png, meta = fig.render()
    view.files.append(str(write_bytes(path, png).relative_to(rel_to)))
    view.data_uri = html.png_data_uri(png)
    view.width, view.heading, view.legend = meta["width"], fig.title, list(fig.legend)
    w, h, band = meta["width"], meta["height"], meta["title_band"]
    view.panels = [{"title": p["title"], "left": round(100 * p["box"][0] / w, 3),
                    "top": round(100 * (p["box"][1] - band) / h, 3),
                    "width": round(100 * p["box"][2] / w, 3)} for p in meta["panels"]]
    if fig.colorbar is not None:
        cb = fig.colorbar
        view.colorbar = {"uri": cb.strip_uri(), "low": cb.low, "high": cb.high,
                         "low_text": f"{cb.low:.1f}", "high_text": f"{cb.high:.1f}",
                         "label": cb.label}
    return view
