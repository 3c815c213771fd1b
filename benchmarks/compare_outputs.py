"""Compare two ironmap output trees file by file; exit 0 when they hold the same results.

Usage::

    python benchmarks/compare_outputs.py DIR_A DIR_B [--html] [--max-report N]

Used to show that a refactor leaves the outputs unchanged: run the same command (e.g.
``ironmap demo OUT --preset fast``) with the code before and after the change and compare the
two output folders. Files are paired by their path relative to each root, with run stamps in
file names (``...-20261206T232625Z-9839.json``) replaced by a placeholder.

What is compared, per kind of file:

- NIfTI (``.nii``, ``.nii.gz``): the header block (348/540 bytes plus extensions) and the voxel
  data, bitwise (shape, dtype and bytes); the gzip wrapper (which holds a time stamp) is not.
- JSON: equal after dropping the keys in :data:`IGNORED_KEYS` (version strings, the command
  line, wall-clock times) at any depth and replacing each tree's root path by ``<ROOT>``; in
  the per-participant manifests (``logs/manifests/*.json``) the checksums of JSON outputs are
  skipped (those files are compared themselves, without their version and command); the QC-page
  cache key in ``page-key.json`` (:data:`IGNORED_FILE_KEYS`) is skipped.
- TSV: equal line by line after replacing the root path, without the columns named in
  :data:`IGNORED_COLUMNS`.
- SVG: equal after removing the ``<metadata>`` block (software version, date) and renaming the
  random clip-path ids in order of appearance.
- HTML: skipped (reports embed versions, dates and absolute links) unless ``--html`` is given;
  then compared after the same version/path/date stripping as text.
- Skipped entirely (:data:`IGNORED_FILES`): log files and wall-clock timing tables.
- Everything else (``.mat`` transforms, PNG figures, ...): bitwise.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
from pathlib import Path

#: JSON keys ignored at any depth: versions, the command line (argv with paths), times.
IGNORED_KEYS = frozenset({
    "Version", "version", "ironmap_version", "versions", "software", "Command", "command",
    "DateTime", "date", "timestamp", "started", "finished", "elapsed_s", "wall_s",
    "duration_s", "seconds", "hostname", "pid",
})
#: Top-level JSON keys ignored in particular files (by file name): the QC-page cache key hashes
#: the output folder's path and the modification times of the files a page is made from, so it
#: differs between any two runs; the rest of the file (page, figure list, QC row, flags) is
#: compared.
IGNORED_FILE_KEYS = {"page-key.json": frozenset({"key"})}
#: TSV columns ignored.
IGNORED_COLUMNS = frozenset({"version", "ironmap_version", "seconds", "elapsed_s", "wall_s",
                             "started", "finished", "timestamp"})
#: File-name patterns (regular expressions on the relative path) not compared at all.
IGNORED_FILES = (r"\.log$", r"(^|/)timings\.(json|tsv)$")
#: Run stamps in file names: date-time and process id.
RUN_STAMP = re.compile(r"\d{8}T\d{6}Z(-\d+)?")
#: Text patterns blanked in HTML (with ``--html``): versions, dates and times.
_HTML_VOLATILE = (re.compile(r"\d+\.\d+\.\d+(\.dev\d+|\+g[0-9a-f]+|[.\w+]*)"),
                  re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?"))


def relative_files(root: Path) -> dict[str, Path]:
    """Normalised relative path -> file, for every regular file under ``root``."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            rel = path.relative_to(root).as_posix()
            out[RUN_STAMP.sub("<STAMP>", rel)] = path
    return out


def _kind(rel: str) -> str:
    if any(re.search(p, rel) for p in IGNORED_FILES):
        return "ignored"
    for suffix, kind in ((".nii.gz", "nifti"), (".nii", "nifti"), (".json", "json"),
                         (".tsv", "tsv"), (".svg", "svg"), (".html", "html")):
        if rel.endswith(suffix):
            return kind
    return "bytes"


def _nifti_parts(path: Path) -> tuple[bytes, bytes, str, tuple]:
    import nibabel as nib
    import numpy as np

    img = nib.load(str(path))
    hdr = img.header
    ext = b"".join(e.get_code().to_bytes(4, "little") + repr(e.get_content()).encode()
                   for e in getattr(hdr, "extensions", []))
    data = np.asanyarray(img.dataobj)
    return hdr.binaryblock + ext, data.tobytes(), str(data.dtype), data.shape


def compare_nifti(a: Path, b: Path) -> str | None:
    """None when header and voxel data are bitwise equal, else what differs."""
    ha, da, ta, sa = _nifti_parts(a)
    hb, db, tb, sb = _nifti_parts(b)
    if ha != hb:
        return "NIfTI header differs"
    if (ta, sa) != (tb, sb):
        return f"voxel array differs: {ta}{sa} vs {tb}{sb}"
    if da != db:
        return "voxel data differ"
    return None


def _scrub(obj, root: str, manifest: bool = False, key: str = ""):
    """JSON value without ignored keys, with the root path replaced."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in IGNORED_KEYS:
                continue
            if manifest and key == "outputs" and k.endswith(".json"):
                continue
            out[k] = _scrub(v, root, manifest, k)
        return out
    if isinstance(obj, list):
        return [_scrub(v, root, manifest, key) for v in obj]
    if isinstance(obj, str):
        return obj.replace(root, "<ROOT>")
    return obj


def _first_difference(x, y, where: str = "") -> str:
    if isinstance(x, dict) and isinstance(y, dict):
        for k in sorted(set(x) | set(y)):
            if k not in x or k not in y:
                return f"key {where}/{k} only in {'B' if k not in x else 'A'}"
            if x[k] != y[k]:
                return _first_difference(x[k], y[k], f"{where}/{k}")
    if isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        for i, (u, v) in enumerate(zip(x, y, strict=True)):
            if u != v:
                return _first_difference(u, v, f"{where}[{i}]")
    return f"{where or '/'}: {str(x)[:80]!r} vs {str(y)[:80]!r}"


def compare_json(a: Path, b: Path, roots: tuple[str, str], rel: str) -> str | None:
    """None when the scrubbed JSON documents are equal, else the first difference."""
    manifest = rel.startswith("logs/manifests/") or "/logs/manifests/" in rel
    x = _scrub(json.loads(a.read_text(encoding="utf-8")), roots[0], manifest)
    y = _scrub(json.loads(b.read_text(encoding="utf-8")), roots[1], manifest)
    for key in IGNORED_FILE_KEYS.get(rel.rsplit("/", 1)[-1], ()):
        for doc in (x, y):
            if isinstance(doc, dict):
                doc.pop(key, None)
    return None if x == y else _first_difference(x, y)


def _tsv_rows(path: Path, root: str) -> list[list[str]]:
    lines = path.read_text(encoding="utf-8").replace(root, "<ROOT>").splitlines()
    rows = [line.split("\t") for line in lines]
    if not rows:
        return rows
    keep = [i for i, name in enumerate(rows[0]) if name not in IGNORED_COLUMNS]
    return [[r[i] for i in keep if i < len(r)] for r in rows]


def compare_tsv(a: Path, b: Path, roots: tuple[str, str]) -> str | None:
    """None when the TSV tables are equal cell by cell (ignored columns dropped)."""
    ra, rb = _tsv_rows(a, roots[0]), _tsv_rows(b, roots[1])
    if len(ra) != len(rb):
        return f"{len(ra)} vs {len(rb)} lines"
    for n, (x, y) in enumerate(zip(ra, rb, strict=True)):
        if x != y:
            cols = ra[0] if ra else []
            diff = [f"{cols[i] if i < len(cols) else i}: {u!r} vs {v!r}"
                    for i, (u, v) in enumerate(zip(x, y, strict=False)) if u != v]
            return f"line {n + 1}: " + ("; ".join(diff[:3]) or "different cell count")
    return None


def _normalise_svg(text: str) -> str:
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    names: dict[str, str] = {}
    for ident in re.findall(r'id="([^"]+)"', text):
        names.setdefault(ident, f"id{len(names)}")
    return re.sub(r'(id="|#)([\w.-]+)',
                  lambda m: m.group(1) + names.get(m.group(2), m.group(2)), text)


def _normalise_html(text: str, root: str) -> str:
    text = text.replace(root, "<ROOT>")
    for pattern in _HTML_VOLATILE:
        text = pattern.sub("<V>", text)
    return text


def compare_pair(a: Path, b: Path, rel: str, roots: tuple[str, str], html: bool
                 ) -> str | None:
    """None when the two files hold the same result, else a short reason."""
    kind = _kind(rel)
    if kind == "nifti":
        return compare_nifti(a, b)
    if kind == "json":
        return compare_json(a, b, roots, rel)
    if kind == "tsv":
        return compare_tsv(a, b, roots)
    if kind == "svg":
        same = _normalise_svg(a.read_text()) == _normalise_svg(b.read_text())
        return None if same else "SVG differs"
    if kind == "html":
        same = _normalise_html(a.read_text(), roots[0]) == _normalise_html(b.read_text(),
                                                                           roots[1])
        return None if same else "HTML differs after stripping versions, dates and paths"
    return None if _read_bytes(a) == _read_bytes(b) else "bytes differ"


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def compare_trees(dir_a: Path, dir_b: Path, html: bool = False) -> dict[str, list]:
    """Compare two output trees.

    Returns
    -------
    dict
        ``same``, ``skipped``, ``only_a``, ``only_b`` (lists of relative paths) and ``differ``
        (list of (relative path, reason)).
    """
    fa, fb = relative_files(dir_a), relative_files(dir_b)
    roots = (str(dir_a.resolve()), str(dir_b.resolve()))
    result: dict[str, list] = {"same": [], "skipped": [], "differ": [],
                               "only_a": sorted(set(fa) - set(fb)),
                               "only_b": sorted(set(fb) - set(fa))}
    for rel in sorted(set(fa) & set(fb)):
        kind = _kind(rel)
        if kind == "ignored" or (kind == "html" and not html):
            result["skipped"].append(rel)
            continue
        reason = compare_pair(fa[rel], fb[rel], rel, roots, html)
        if reason is None:
            result["same"].append(rel)
        else:
            result["differ"].append((rel, reason))
    return result


def main(argv: list[str] | None = None) -> int:
    """Compare DIR_A and DIR_B; 0 when identical (ignoring the listed fields), 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir_a", type=Path)
    parser.add_argument("dir_b", type=Path)
    parser.add_argument("--html", action="store_true",
                        help="also compare HTML after stripping versions, dates and paths")
    parser.add_argument("--max-report", type=int, default=30,
                        help="differences listed at most (default 30)")
    args = parser.parse_args(argv)
    for d in (args.dir_a, args.dir_b):
        if not d.is_dir():
            parser.error(f"{d}: not a folder")
    res = compare_trees(args.dir_a, args.dir_b, args.html)
    print(f"identical: {len(res['same'])} files; skipped: {len(res['skipped'])} "
          f"(logs, timings{'' if args.html else ', HTML'}); differ: {len(res['differ'])}; "
          f"only in A: {len(res['only_a'])}; only in B: {len(res['only_b'])}")
    print("ignored JSON keys: " + ", ".join(sorted(IGNORED_KEYS)) + "; per file: "
          + ", ".join(f"{f}: {', '.join(sorted(k))}" for f, k in IGNORED_FILE_KEYS.items()))
    for rel, reason in res["differ"][: args.max_report]:
        print(f"DIFFER  {rel}: {reason}")
    for side in ("only_a", "only_b"):
        for rel in res[side][: args.max_report]:
            print(f"ONLY {side[-1].upper()}  {rel}")
    return 0 if not (res["differ"] or res["only_a"] or res["only_b"]) else 1


if __name__ == "__main__":
    sys.exit(main())
