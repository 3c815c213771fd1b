"""``ironmap import-dicom DICOM_DIR BIDS_DIR --participant-label X``: DICOM -> BIDS."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("ironmap.import_dicom")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ironmap import-dicom``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The subcommand's parser; options are added to it.
    """
    parser.add_argument("dicom_dir", type=Path, metavar="DICOM_DIR",
                        help="folder with the DICOM files of one participant and session "
                             "(only read; .dcm.gz accepted)")
    parser.add_argument("bids_dir", type=Path, metavar="BIDS_DIR",
                        help="BIDS dataset to add the participant to (created when absent)")
    parser.add_argument("--participant-label", required=True, metavar="X",
                        help="BIDS participant label (sub-X); never derived from the headers")
    parser.add_argument("--session-label", metavar="Y", help="BIDS session label (ses-Y)")
    parser.add_argument("--site", help="site label for participants.tsv and the protocol "
                                       "tables (e.g. site-01)")
    parser.add_argument("--group", metavar="LABEL",
                        help="participant group (e.g. HC, RRMS) for participants.tsv's group "
                             "column, which the group level reads")
    parser.add_argument("--age", type=float, metavar="YEARS",
                        help="age in years for participants.tsv (default: from the headers)")
    parser.add_argument("--sex", choices=["M", "F", "O"],
                        help="sex for participants.tsv (default: from the headers)")
    parser.add_argument("--map", dest="series_map", type=Path, metavar="SERIES_MAP.tsv",
                        help="TSV with columns pattern, suffix (MEGRE, T1w, FLAIR, ignore) "
                             "overriding the series recognition rules")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace this participant's (session's) existing anat folder")
    parser.add_argument("--work-dir", type=Path,
                        help="folder for temporary conversion files (default: system temp)")


def run(args: argparse.Namespace) -> int:
    """Run the import.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options (:func:`add_arguments` and the common ones).

    Returns
    -------
    int
        Exit code: 0 on success, 1 on bad input (the message names the series or file).
    """
    from ironmap.io.atomic import OutputExistsError
    from ironmap.io.dicom import DicomImportError
    from ironmap.workflows.import_dicom import import_dicom

    try:
        result = import_dicom(args.dicom_dir, args.bids_dir, args.participant_label,
                              session_label=args.session_label, site=args.site,
                              series_map=args.series_map, overwrite=args.overwrite,
                              work_dir=args.work_dir, group=args.group, age=args.age,
                              sex=args.sex)
    except (DicomImportError, OutputExistsError) as exc:
        log.error("%s", exc)
        return 1
    log.info("imported %d images for sub-%s; log: %s", len(result.written),
             result.participant_id, result.log_path)
    return 0
