"""Where a method's tissue maps come from: the patient's own maps when given, else maps segmented from the patient's
T1 (:mod:`TumorPersonalizationLib.imaging.segmentation`: EM with the atlas registered to the T1 as prior, the
lesion left to the prior), else none (the method works in the bundled atlas).

The returned report says which, and for segmented maps how the fit went (iterations, log-likelihood per voxel,
tissue intensities, the share of the brain per class, seconds), so that a poor input shows in ``report.json``.
"""
from __future__ import annotations

import time


def patient_tissue(case, *, segment: bool = True, registration=None, skull_stripped: bool | None = None,
                   progress=None) -> tuple:
    """``(TissueMaps or None, report)`` for ``case``.

    Parameters
    ----------
    case : Case
    segment : bool
        Segment the T1 when no maps are given (False: None, the atlas).
    registration : Registration, optional
        The T1's registration to the atlas when the caller has one (Learn-Morph-Infer); else it is made here, the
        FLAIR lesion left out of the similarity.
    skull_stripped : bool, optional
        For the registration made here; None: detected.
    progress : Progress, optional
        The method's progress, or a part of it (:meth:`Progress.part`); Cancel is honoured between stages.
    """
    if case.tissue is not None:
        return case.tissue, {"source": f"given ({case.name('wm')}, {case.name('gm')}"
                                       + (f", {case.name('csf')})" if case.csf is not None else ")")}
    if not segment or case.t1 is None:
        return None, {"source": "bundled atlas"}
    from ..imaging.segmentation import atlas_priors, segment_tissue
    from ..lmi.stages import register

    started = time.perf_counter()
    if registration is None:
        if progress is not None:
            progress(0.0, "registering the T1 to the atlas (for its tissue maps)")
        registration = register(case.t1, case.flair, skull_stripped=skull_stripped, t1_name=case.name("t1"),
                                progress=None if progress is None else progress.part(0.0, 0.8))
    registered = time.perf_counter()
    if progress is not None:
        progress(0.8, "segmenting the T1 into tissue maps")
    segmentation = segment_tissue(case.t1, atlas_priors(registration), lesion=case.flair)
    report = {"source": f"segmented from {case.name('t1')}", **segmentation.report,
              "seconds": {"registration": registered - started, "segmentation": time.perf_counter() - registered}}
    if progress is not None:
        progress(1.0, "tissue maps ready")
    return segmentation.tissue, report

