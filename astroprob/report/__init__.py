"""The calibration report: are an estimator's error bars honest?

`calibrate` runs SBC, HPD coverage, TARP and z-score/contraction diagnostics on
fresh held-out simulations and returns a `CalibrationReport`, which prints a
one-screen summary (``str(report)``), converts to JSON (``to_dict``,
``to_json``) and saves one self-contained HTML page with its figures
(``save("report.html")``). The figures are in `figures`.

Examples:
    >>> import jax, astroprob as ap  # doctest: +SKIP
    >>> report = ap.calibrate(jax.random.key(3), npe, task, n=1000)  # doctest: +SKIP
    >>> print(report); report.save("report.html")  # doctest: +SKIP
"""

from astroprob.report import figures
from astroprob.report._calibrate import calibrate
from astroprob.report._report import CalibrationReport

__all__ = ["CalibrationReport", "calibrate", "figures"]
