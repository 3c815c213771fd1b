"""Report page sizes and screenshots (run by hand on a finished run, e.g. the demo's).

    python benchmarks/report_pages.py OUTPUT_DIR [SCREENSHOT_DIR]

Prints the size of ``report.html`` and of every participant page (with the viewer's share),
and, with SCREENSHOT_DIR, writes PNG screenshots of the study report (top, Table 2, Figure 2)
and of the first participant page's viewer taken in headless Chromium (tests/_chromium.py),
downscaled to keep them small.
"""

from __future__ import annotations

import io
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _chromium import open_page  # noqa: E402

SHOTS = {"report.html": {"report-top": "main", "report-table2": "#sec-table2",
                         "report-figure2": "#figures"},
         "sub": {"participant-viewer": "#viewer", "participant-overlays": "#sec-regions"}}
#: (maximum height in CSS px, scale) of each saved screenshot
CROP = {"report-top": (760, 0.6), "report-table2": (560, 0.75), "report-figure2": (1000, 0.5),
        "participant-viewer": (800, 0.7), "participant-overlays": (1100, 0.5)}


def sizes(out: Path) -> list[tuple[str, int, int]]:
    """(page, bytes, bytes of the viewer's embedded data) of every page."""
    rows = []
    for page in [out / "report.html", *sorted(out.glob("sub-*.html"))]:
        text = page.read_text(encoding="utf-8")
        m = re.search(r'<script type="application/json" id="iv-data">(.*?)</script>', text, re.S)
        rows.append((page.name, page.stat().st_size, len(m.group(1)) if m else 0))
    return rows


def _save(png: bytes, path: Path, max_h: int, scale: float) -> None:
    from PIL import Image

    img = Image.open(io.BytesIO(png))
    img = img.crop((0, 0, img.width, min(img.height, max_h)))
    img = img.resize((int(img.width * scale), int(img.height * scale)), Image.LANCZOS)
    img.convert("RGB").save(path, optimize=True)


def _most_lesions(out: Path) -> Path:
    """The page of the participant with the largest lesion load (else the first page)."""
    import pandas as pd

    pages = sorted(out.glob("sub-*.html"))
    les = out / "group" / "lesions.tsv"
    if les.exists():
        table = pd.read_csv(les, sep="\t").sort_values("lesion_load_cm3", ascending=False)
        for pid in table["participant_id"]:
            if (out / f"{pid}.html").exists():
                return out / f"{pid}.html"
    return pages[0]


def screenshots(out: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    pages = {"report.html": out / "report.html", "sub": _most_lesions(out)}
    # wait for the viewer; show the axial slice with most lesion voxels
    wait = {"viewer": "window.ironmapViewer ? window.ironmapViewer.ready.then(() => "
                      "window.ironmapViewer.showLesion()) : 0"}
    with tempfile.TemporaryDirectory() as tmp:
        for key, page in pages.items():
            res = open_page(page, wait, Path(tmp), elements=SHOTS[key])
            if res.errors:
                print(f"{page.name}: console errors: {res.errors}")
            for name, png in res.shots.items():
                _save(png, dest / f"{name}.png", *CROP[name])
                print(f"wrote {dest / name}.png ({(dest / f'{name}.png').stat().st_size} B)")


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    rows = sizes(out)
    print("page\tbytes\tviewer_data_bytes")
    for name, n, v in rows:
        print(f"{name}\t{n}\t{v}")
    subs = [n for name, n, _ in rows if name.startswith("sub-")]
    if subs:
        print(f"participant pages: {len(subs)}, max {max(subs) / 2**20:.2f} MiB, "
              f"median {sorted(subs)[len(subs) // 2] / 2**20:.2f} MiB")
    if len(argv) > 1:
        screenshots(out, Path(argv[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
