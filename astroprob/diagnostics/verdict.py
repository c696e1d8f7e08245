"""One verdict from several calibration tests: per parameter and overall.

`combine` gathers the exact tests of `sbc` (one per parameter and per extra
function of θ), `expected_coverage` and `tarp`, and applies one Bonferroni
correction over all of them, so that an exact posterior is declared
"calibrated" with probability at least ``1 - alpha`` overall. Each parameter's
verdict comes from its SBC ranks (biased, overconfident or underconfident, by
the dominant departure); the joint tests (HPD coverage, TARP, SBC of functions
such as the log-density) get verdicts of their own. The overall verdict is
"calibrated" when no test rejects, and otherwise the verdict of the most
significant rejected test.
"""

from __future__ import annotations

from dataclasses import dataclass

from astroprob.diagnostics import _checks
from astroprob.diagnostics._uniformity import CALIBRATED, OVERCONFIDENT, UNDERCONFIDENT, classify
from astroprob.diagnostics.coverage import CoverageResult
from astroprob.diagnostics.sbc import SBCResult
from astroprob.diagnostics.tarp import TARPResult

__all__ = ["CalibrationVerdict", "combine"]


@dataclass(frozen=True)
class CalibrationVerdict:
    """The combined verdict of several calibration tests.

    Attributes:
        overall: ``"calibrated"`` or the verdict of the most significant failure.
        parameters: verdict per parameter (from SBC).
        joint: verdict per joint test (``"coverage"``, ``"tarp"``, ``"sbc:<function>"``).
        p_values: raw p-value of every test, by name (``"sbc:<name>"``,
            ``"coverage"``, ``"tarp"``).
        alpha: the family-wise level.
        alpha_per_test: ``alpha`` divided by the number of tests.
    """

    overall: str
    parameters: dict[str, str]
    joint: dict[str, str]
    p_values: dict[str, float]
    alpha: float
    alpha_per_test: float

    @property
    def calibrated(self) -> bool:
        """Whether every test passed."""
        return self.overall == CALIBRATED

    def to_dict(self) -> dict:
        """JSON-ready copy."""
        return {
            "overall": self.overall,
            "parameters": dict(self.parameters),
            "joint": dict(self.joint),
            "p_values": dict(self.p_values),
            "alpha": self.alpha,
            "alpha_per_test": self.alpha_per_test,
        }


def combine(
    *,
    sbc: SBCResult | None = None,
    coverage: CoverageResult | None = None,
    tarp: TARPResult | None = None,
    alpha: float = 0.05,
    num_parameters: int | None = None,
) -> CalibrationVerdict:
    """Combine SBC, HPD-coverage and TARP results into one Bonferroni-corrected verdict.

    Args:
        sbc: an `SBCResult`; its first ``num_parameters`` statistics are the
            parameters, the rest (functions of θ) count as joint tests.
        coverage: a `CoverageResult`.
        tarp: a `TARPResult`.
        alpha: family-wise significance level.
        num_parameters: how many SBC statistics are parameters (default: those
            not named by functions, i.e. all if ``sbc`` was run without functions).

    Returns:
        A `CalibrationVerdict`.

    Raises:
        ValueError: if no result is given or ``num_parameters`` is out of range.
    """
    alpha = _checks.check_alpha(alpha)
    if sbc is None and coverage is None and tarp is None:
        raise ValueError("combine: expected at least one of sbc, coverage, tarp")
    tests: list[tuple[str, float]] = []
    if sbc is not None:
        dim = len(sbc.names) if num_parameters is None else num_parameters
        if not 0 <= dim <= len(sbc.names):
            raise ValueError(f"num_parameters: expected 0..{len(sbc.names)}; got {num_parameters}")
        tests += [(f"sbc:{name}", float(p)) for name, p in zip(sbc.names, sbc.p_value, strict=True)]
    if coverage is not None:
        tests.append(("coverage", coverage.p_value))
    if tarp is not None:
        tests.append(("tarp", tarp.p_value))
    level = alpha / len(tests)

    parameters: dict[str, str] = {}
    joint: dict[str, str] = {}
    labels: dict[str, str] = {}
    if sbc is not None:
        for j, name in enumerate(sbc.names):
            label = classify(
                rejected=bool(sbc.p_value[j] <= level),
                bias_z=float(sbc.test.bias_z[j]),
                dispersion_z=float(sbc.test.dispersion_z[j]),
            )
            (parameters if j < dim else joint)[name if j < dim else f"sbc:{name}"] = label
            labels[f"sbc:{name}"] = label
    if coverage is not None:
        labels["coverage"] = joint["coverage"] = _direction(
            rejected=coverage.p_value <= level, signed_area=coverage.area
        )
    if tarp is not None:
        labels["tarp"] = joint["tarp"] = _direction(
            rejected=tarp.p_value <= level, signed_area=tarp.atc
        )

    p_values = dict(tests)
    failed = [(p, name) for name, p in tests if labels[name] != CALIBRATED]
    overall = labels[min(failed)[1]] if failed else CALIBRATED
    return CalibrationVerdict(
        overall=overall,
        parameters=parameters,
        joint=joint,
        p_values=p_values,
        alpha=alpha,
        alpha_per_test=level,
    )


def _direction(*, rejected: bool, signed_area: float) -> str:
    if not rejected:
        return CALIBRATED
    return OVERCONFIDENT if signed_area < 0 else UNDERCONFIDENT
