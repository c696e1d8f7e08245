"""Diagnostics on arrays of samples: is a posterior estimate right?

Array convention: ``samples`` has shape ``(n_sims, n_samples, dim)``, posterior
draws for each of ``n_sims`` simulated observations, and ``theta`` has shape
``(n_sims, dim)``, the parameters that generated them (drawn from the prior).

- `sbc`: simulation-based calibration ranks with the exact ECDF test and bands.
- `expected_coverage`: coverage of highest-posterior-density regions.
- `tarp`: TARP expected coverage with random reference points.
- `z_score_contraction`: posterior z-scores and contraction.
- `predictive_check`: posterior predictive p-values of observations.
- `classification_calibration`: reliability diagram and ECE of class probabilities.
- `c2st`: classifier two-sample test between two sets of samples (sbibm's metric).
- `combine`: one Bonferroni-corrected verdict from SBC, coverage and TARP.

The ``run_*`` wrappers (module `runners`) simulate a fresh test set for a
trained estimator and a task, then call the functions above.
"""

from astroprob.diagnostics import runners
from astroprob.diagnostics._uniformity import (
    BIASED,
    CALIBRATED,
    OVERCONFIDENT,
    UNDERCONFIDENT,
    VERDICTS,
    RankUniformity,
)
from astroprob.diagnostics.c2st import c2st
from astroprob.diagnostics.classification import (
    ClassificationCalibrationResult,
    classification_calibration,
)
from astroprob.diagnostics.contraction import ContractionResult, z_score_contraction
from astroprob.diagnostics.coverage import CoverageResult, expected_coverage
from astroprob.diagnostics.predictive import (
    DEFAULT_STATISTICS,
    PredictiveCheckResult,
    predictive_check,
)
from astroprob.diagnostics.runners import (
    TestSet,
    run_expected_coverage,
    run_predictive_check,
    run_sbc,
    run_tarp,
    run_z_score_contraction,
    simulate_test_set,
)
from astroprob.diagnostics.sbc import SBCResult, sbc
from astroprob.diagnostics.tarp import TARPResult, tarp
from astroprob.diagnostics.verdict import CalibrationVerdict, combine

__all__ = [
    "BIASED",
    "CALIBRATED",
    "DEFAULT_STATISTICS",
    "OVERCONFIDENT",
    "UNDERCONFIDENT",
    "VERDICTS",
    "CalibrationVerdict",
    "ClassificationCalibrationResult",
    "ContractionResult",
    "CoverageResult",
    "PredictiveCheckResult",
    "RankUniformity",
    "SBCResult",
    "TARPResult",
    "TestSet",
    "c2st",
    "classification_calibration",
    "combine",
    "expected_coverage",
    "predictive_check",
    "run_expected_coverage",
    "run_predictive_check",
    "run_sbc",
    "run_tarp",
    "run_z_score_contraction",
    "runners",
    "sbc",
    "simulate_test_set",
    "tarp",
    "z_score_contraction",
]
