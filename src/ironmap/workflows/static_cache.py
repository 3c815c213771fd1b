"""Template-derived products kept in the on-disk cache (:mod:`ironmap.io.cache`).

Two products are derived from installed data only and are the same on every run:

* nilearn's ICBM152 2009a template on an ``n`` mm grid
  (:func:`ironmap.spatial.segmentation.load_template`; the 2 mm grid of the automatic anatomy
  route costs about 3 CPU-s of resampling);
* the template-built head of ``ironmap simulate --anatomy template``
  (:func:`ironmap.workflows.simulate_template.build_template_anatomy`; about 7 CPU-s).

Each is keyed by the bytes of its input files (nilearn's template images, the atlas folders,
ironmap's label table), the versions of ironmap and of the libraries that compute it, and
the source files of the code that computes it; a changed input or code gives a new key.
:func:`cached_template` and :func:`cached_template_anatomy` return what the uncached
functions return, array for array (``tests/unit/test_static_cache.py``).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from ironmap.io import cache

#: Modules whose source code makes each product (hashed into its key).
_TEMPLATE_CODE = ("ironmap.spatial.segmentation",)
_ANATOMY_CODE = _TEMPLATE_CODE + (
    "ironmap.sim.template", "ironmap.sim.anatomy", "ironmap.workflows.simulate_template",
    "ironmap.workflows.putamen", "ironmap.spatial.atlas", "ironmap.spatial.anatomy",
    "ironmap.io.atlas", "ironmap.core.regions.putamen_split")
#: nilearn's bundled 1 mm ICBM152 2009a images (what ``load_template`` resamples).
_NILEARN_FILES = ("mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
                  "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
                  "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz")


def _source_file(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:  # pragma: no cover - ironmap's own modules
        raise ImportError(module)
    return Path(spec.origin)


def _versions() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    import ironmap

    out = [f"ironmap {ironmap.__version__}", f"numpy {np.__version__}"]
    for dist in ("scipy", "nibabel", "nilearn"):
        try:
            out.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            out.append(f"{dist} absent")
    return out


def _nilearn_files() -> list[Path]:
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        return [Path("nilearn-not-installed")]
    data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    return [data / name for name in _NILEARN_FILES]


def _code(modules: tuple[str, ...]) -> list[Path]:
    return [_source_file(m) for m in modules]


def template_key(resolution_mm: int) -> str:
    """Cache key of the template on a ``resolution_mm`` grid.

    Parameters
    ----------
    resolution_mm : int
        1, 2 or 3.

    Returns
    -------
    str
        :func:`ironmap.io.cache.content_key` of the versions, nilearn's template files and
        the code.
    """
    return cache.content_key([f"template {int(resolution_mm)} mm", *_versions(),
                              *_nilearn_files(), *_code(_TEMPLATE_CODE)])


@functools.lru_cache(maxsize=4)
def cached_template(resolution_mm: int = 2):
    """:func:`ironmap.spatial.segmentation.load_template`, through the on-disk cache.

    Parameters
    ----------
    resolution_mm : int, optional
        1, 2 or 3.

    Returns
    -------
    ironmap.spatial.segmentation.Template
        The same images and arrays as ``load_template(resolution_mm)``.
    """
    import nibabel as nib

    from ironmap.spatial.segmentation import Template, load_template

    key = template_key(resolution_mm)
    got = cache.load_arrays(f"template{int(resolution_mm)}mm", key)
    if got is not None:
        return Template(t1=nib.Nifti1Image(got["t1"], got["affine"]), gm=got["gm"],
                        wm=got["wm"], csf=got["csf"], mask=got["mask"])
    tpl = load_template(resolution_mm)
    cache.save_arrays(f"template{int(resolution_mm)}mm", key,
                      {"t1": np.asanyarray(tpl.t1.dataobj), "affine": tpl.t1.affine,
                       "gm": tpl.gm, "wm": tpl.wm, "csf": tpl.csf, "mask": tpl.mask})
    return tpl


def template_anatomy_key(atlas_dirs: tuple[str, ...]) -> str:
    """Cache key of the template-built head with these atlas folders.

    Parameters
    ----------
    atlas_dirs : tuple of str
        The ``--anatomy-atlas`` folders (may be empty).

    Returns
    -------
    str
        :func:`ironmap.io.cache.content_key` of the versions, the template files, the atlas
        folders (given and packaged), ironmap's label table and the code.
    """
    from ironmap.io.atlas import packaged_atlas_folder

    packaged = packaged_atlas_folder()
    folders = [Path(f).resolve() for f in atlas_dirs]
    label_table = _source_file("ironmap.io.atlas").parents[1] / "data" / "atlas_labels.tsv"
    return cache.content_key(["template anatomy", *_versions(), *_nilearn_files(),
                              f"{len(folders)} atlas folders", *folders,
                              "packaged atlases", packaged or "none", label_table,
                              *_code(_ANATOMY_CODE)])


def cached_template_anatomy(atlas_dirs: tuple[str, ...], build):
    """:func:`ironmap.workflows.simulate_template.build_template_anatomy` through the cache.

    Parameters
    ----------
    atlas_dirs : tuple of str
        Atlas folders as distributed (may be empty).
    build : callable
        ``build(atlas_dirs)`` computes the product when the cache has no valid entry
        (:func:`ironmap.workflows.simulate_template.build_template_anatomy`; passed in, so
        that this module does not import the simulation workflow that calls it).

    Returns
    -------
    ironmap.sim.template.TemplateAnatomy
        The same labels, affine, landmarks, putamen fraction and source text as building it.
    """
    from ironmap.sim.template import TemplateAnatomy

    key = template_anatomy_key(atlas_dirs)
    got = cache.load_arrays("template_anatomy", key)
    if got is not None:
        return TemplateAnatomy(got["labels"], got["affine"], got["ac_mm"], got["pc_mm"],
                               float(got["putamen_anterior_fraction"]), str(got["source"]))
    anat = build(atlas_dirs)
    cache.save_arrays("template_anatomy", key,
                      {"labels": anat.labels, "affine": anat.affine, "ac_mm": anat.ac_mm,
                       "pc_mm": anat.pc_mm,
                       "putamen_anterior_fraction": np.float64(anat.putamen_anterior_fraction),
                       "source": np.str_(anat.source)})
    return anat
