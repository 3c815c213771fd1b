"""Participant pages are made once and reused while nothing they are made from changes."""

from __future__ import annotations

import os

import numpy as np
import pytest

from _report_study import make_study
from ironmap.io.outputs import derivative_path
from ironmap.workflows.pagecache import KEY_FILE
from ironmap.workflows.report import write_reports


def _snapshot(out):
    """Modification time of every page and figure file."""
    files = [*out.glob("sub-*.html"), *out.glob("sub-*/figures/*")]
    return {p: p.stat().st_mtime_ns for p in files if p.name != KEY_FILE}


def test_pages_are_reused_until_an_input_changes(tmp_path):
    cfg = make_study(tmp_path, np.random.default_rng(3), groups={"HC": 1, "RRMS": 1})
    out = cfg.output_dir
    first = write_reports(cfg)
    qc = (out / "group" / "qc.tsv").read_text()
    before = _snapshot(out)
    assert len([p for p in before if p.suffix == ".html"]) == 2

    second = write_reports(cfg)  # nothing changed: no page or figure is written again
    assert [p.name for p in second] == [p.name for p in first]
    assert _snapshot(out) == before
    assert (out / "group" / "qc.tsv").read_text() == qc  # rows and flags come back intact

    r2 = derivative_path(out, "r2starmap", "sub-002")
    st = r2.stat()
    os.utime(r2, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the participant was rerun
    write_reports(cfg)
    after = _snapshot(out)
    changed = {p.name for p in before if after[p] != before[p]}
    assert "sub-002.html" in changed
    assert not {n for n in changed if n.startswith("sub-001")}
    assert (out / "group" / "qc.tsv").read_text() == qc


def test_page_key_does_not_depend_on_how_masks_were_found(tmp_path):
    """The participant level discovers rater masks (``--masks``), the report may not: a
    participant's page key must be the same either way, or no page would ever be reused."""
    import dataclasses

    from ironmap.io.bids import MaskFile, discover
    from ironmap.report import study
    from ironmap.workflows.pagecache import page_key
    from ironmap.workflows.report import page_thresholds

    cfg = make_study(tmp_path, np.random.default_rng(3), groups={"HC": 1, "RRMS": 1})
    subject = discover(cfg.bids_dir)[0]
    mask = tmp_path / "rater_dseg.nii.gz"
    mask.write_bytes(b"rater mask")
    with_masks = dataclasses.replace(subject, dsegs=(MaskFile(path=mask, kind="dseg"),))
    assert with_masks.input_files() != subject.input_files()
    thr = page_thresholds(study.StudyInputs(output_dir=cfg.output_dir, config={},
                                            problems=[]))
    info = {"group": "HC"}
    assert page_key(cfg.output_dir, with_masks, info, thr) == \
        page_key(cfg.output_dir, subject, info, thr)


@pytest.mark.slow
def test_deleted_figure_makes_the_page_again(tmp_path):
    cfg = make_study(tmp_path, np.random.default_rng(4), groups={"HC": 1, "RRMS": 1})
    out = cfg.output_dir
    write_reports(cfg)
    fig = next(p for p in (out / "sub-001" / "figures").iterdir() if p.suffix == ".png")
    fig.unlink()
    write_reports(cfg)
    assert fig.exists()


@pytest.mark.slow
def test_pages_in_two_processes_equal_serial_pages(tmp_path):
    import dataclasses

    serial = make_study(tmp_path / "a", np.random.default_rng(5), groups={"HC": 2, "RRMS": 1})
    twoproc = make_study(tmp_path / "b", np.random.default_rng(5), groups={"HC": 2, "RRMS": 1})
    pages_a = write_reports(serial)
    pages_b = write_reports(dataclasses.replace(twoproc, nprocs=2))
    assert [p.name for p in pages_a] == [p.name for p in pages_b]
    for name in ("group/qc.tsv", "sub-001.html", "sub-003.html"):
        assert (serial.output_dir / name).read_text() == (twoproc.output_dir / name).read_text()


@pytest.mark.slow
def test_pool_starts_only_for_pages_to_make(tmp_path, monkeypatch):
    """Reused pages are settled before any worker process starts (spawned workers cost a
    start-up each): a rerun with nothing changed starts no pool; one changed participant is
    made in this process."""
    import dataclasses

    import ironmap.parallel as par

    started = []
    real_pool = par.process_pool

    def counted(n, **kwargs):  # the real pool, counted
        started.append(n)
        return real_pool(n, **kwargs)

    monkeypatch.setattr(par, "process_pool", counted)
    cfg = dataclasses.replace(make_study(tmp_path, np.random.default_rng(3),
                                         groups={"HC": 2, "RRMS": 1}), nprocs=2)
    write_reports(cfg)
    assert started == [2]
    before = _snapshot(cfg.output_dir)
    write_reports(cfg)
    assert started == [2] and _snapshot(cfg.output_dir) == before
    r2 = derivative_path(cfg.output_dir, "r2starmap", "sub-003")
    st = r2.stat()
    os.utime(r2, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    write_reports(cfg)
    assert started == [2]  # one page to make: no pool
    changed = {p.name for p, t in _snapshot(cfg.output_dir).items() if before[p] != t}
    assert "sub-003.html" in changed and not {n for n in changed if n.startswith("sub-00")
                                              and not n.startswith("sub-003")}
