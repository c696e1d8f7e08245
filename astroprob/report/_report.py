"""The `CalibrationReport`: numbers, verdicts, figures; as text, JSON or one HTML file."""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from astroprob.diagnostics.contraction import ContractionResult
from astroprob.diagnostics.coverage import CoverageResult
from astroprob.diagnostics.predictive import PredictiveCheckResult
from astroprob.diagnostics.sbc import SBCResult
from astroprob.diagnostics.tarp import TARPResult
from astroprob.diagnostics.verdict import CalibrationVerdict
from astroprob.report import figures

FORMAT = "astroprob-calibration-report"
FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class CalibrationReport:
    """The outcome of `astroprob.calibrate`: every diagnostic, the verdicts and how they were made.

    Attributes:
        task: name of the task.
        estimator: description of the estimator (its ``repr``).
        parameter_names: names of the parameters.
        settings: how the report was made (simulations, samples, alpha, ...).
        sbc: SBC ranks and tests per parameter.
        coverage: expected coverage of HPD regions.
        tarp: the TARP curve and test.
        contraction: z-scores and posterior contraction.
        verdict: the combined, Bonferroni-corrected verdict.
        predictive: posterior predictive checks of given observations, if any.
        example_truth: (dim,) true parameters of the example simulation.
        example_samples: (n_samples, dim) its posterior samples (for the corner plot).
        metadata: versions, date and timings.
    """

    task: str
    estimator: str
    parameter_names: tuple[str, ...]
    settings: dict[str, Any]
    sbc: SBCResult
    coverage: CoverageResult
    tarp: TARPResult
    contraction: ContractionResult
    verdict: CalibrationVerdict
    predictive: PredictiveCheckResult | None = None
    example_truth: np.ndarray | None = field(default=None, repr=False)
    example_samples: np.ndarray | None = field(default=None, repr=False)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def calibrated(self) -> bool:
        """Whether every calibration test passed."""
        return self.verdict.calibrated

    # ------------------------------------------------------------------ numbers
    def to_dict(self, *, include_ranks: bool = False) -> dict[str, Any]:
        """All numbers and verdicts as JSON-ready Python objects.

        Args:
            include_ranks: also list every SBC rank (``n_sims * dim`` integers).
        """
        parameters = {}
        for j, name in enumerate(self.parameter_names):
            parameters[name] = {
                "verdict": self.verdict.parameters[name],
                "sbc_p_value": float(self.sbc.p_value[j]),
                "sbc_log_gamma": _finite(self.sbc.log_gamma[j]),
                "sbc_bias_z": float(self.sbc.test.bias_z[j]),
                "sbc_dispersion_z": float(self.sbc.test.dispersion_z[j]),
                "sbc_chi2_p_value": float(self.sbc.test.chi2_p_value[j]),
                "sbc_ks_p_value": float(self.sbc.test.ks_p_value[j]),
                "mean_z": float(self.contraction.mean_z[j]),
                "rms_z": float(self.contraction.rms_z[j]),
                "mean_contraction": float(self.contraction.mean_contraction[j]),
            }
        out = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "task": self.task,
            "estimator": self.estimator,
            "parameter_names": list(self.parameter_names),
            "settings": _jsonable(self.settings),
            "verdict": self.verdict.to_dict(),
            "parameters": parameters,
            "sbc": self.sbc.to_dict(include_ranks=include_ranks),
            "coverage": self.coverage.to_dict(),
            "tarp": self.tarp.to_dict(),
            "contraction": self.contraction.to_dict(),
            "predictive": None if self.predictive is None else self.predictive.to_dict(),
            "metadata": _jsonable(self.metadata),
        }
        return _jsonable(out)

    def to_json(self, *, indent: int | None = 1) -> str:
        """`to_dict` as a JSON string (strict JSON: no NaN or infinity)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    # ------------------------------------------------------------------ text
    def __str__(self) -> str:
        v = self.verdict
        s = self.settings
        lines = [
            f"astroprob calibration report: task {self.task}",
            f"estimator: {self.estimator}",
            f"{s.get('n')} held-out simulations x {s.get('num_samples')} posterior samples; "
            f"alpha = {v.alpha:g} family-wise ({v.alpha_per_test:.3g} per test, "
            f"Bonferroni over {len(v.p_values)} tests)",
        ]
        if s.get("num_invalid"):
            lines.append(f"left out: {s['num_invalid']} test simulations with NaN or inf")
        lines += [f"OVERALL: {v.overall.upper()}", ""]
        width = max(12, *(len(n) for n in self.parameter_names))
        lines.append(
            f"{'parameter':<{width}}  {'verdict':<14} {'SBC p':>8} {'log γ':>7} "
            f"{'bias z':>7} {'disp z':>7} {'mean z':>7} {'rms z':>6} {'contr.':>6}"
        )
        for j, name in enumerate(self.parameter_names):
            c = self.contraction
            lines.append(
                f"{name:<{width}}  {v.parameters[name]:<14} {self.sbc.p_value[j]:>8.3g} "
                f"{_fmt(self.sbc.log_gamma[j], '7.2f')} {self.sbc.test.bias_z[j]:>+7.2f} "
                f"{self.sbc.test.dispersion_z[j]:>+7.2f} {c.mean_z[j]:>+7.2f} "
                f"{c.rms_z[j]:>6.2f} {c.mean_contraction[j]:>6.2f}"
            )
        lines += [
            "",
            f"{'joint test':<{width}}  {'verdict':<14} {'p':>8}  numbers",
            f"{'HPD coverage':<{width}}  {v.joint['coverage']:<14} {self.coverage.p_value:>8.3g}  "
            f"mean(coverage - level) {self.coverage.area:+.3f} ({self.coverage.method})",
            f"{'TARP':<{width}}  {v.joint['tarp']:<14} {self.tarp.p_value:>8.3g}  "
            f"ATC {self.tarp.atc:+.3f}, area {self.tarp.area:.3f}",
        ]
        if self.predictive is not None:
            p = self.predictive
            flagged = np.flatnonzero(p.flagged).tolist()
            lines += [
                "",
                f"predictive checks: {len(p.verdict)} observations, {len(flagged)} atypical"
                + (f" (indices {flagged[:10]})" if flagged else ""),
            ]
        lines += [
            "",
            "verdicts: calibrated | overconfident (error bars too small) | underconfident "
            "(too large) | biased (shifted)",
        ]
        return "\n".join(lines)

    # ------------------------------------------------------------------ figures
    def figures(self) -> dict[str, Figure]:
        """The report's figures, by name."""
        out = {
            "sbc_ranks": figures.rank_ecdf_figure(self.sbc),
            "coverage": figures.coverage_figure(self.coverage),
            "tarp": figures.tarp_figure(self.tarp),
            "recovery": figures.recovery_figure(self.contraction),
            "contraction": figures.contraction_figure(self.contraction),
        }
        if self.example_samples is not None:
            out["example_posterior"] = figures.corner_figure(
                self.example_samples,
                self.example_truth,
                self.parameter_names,
                title="Example posterior (first test simulation); + marks the truth",
            )
        return out

    # ------------------------------------------------------------------ files
    def to_html(self) -> str:
        """One self-contained HTML page: verdicts, tables and figures as embedded PNGs."""
        from astroprob.report._html import render

        images = {}
        for name, fig in self.figures().items():
            images[name] = base64.b64encode(figures.to_png(fig)).decode("ascii")
        return render(self, images)

    def save(self, path: str | Path) -> Path:
        """Write the report: HTML for ``.html``/``.htm``, JSON for ``.json``.

        Returns:
            The path written.

        Raises:
            ValueError: for another file extension.
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix in (".html", ".htm"):
            text = self.to_html()
        elif suffix == ".json":
            text = self.to_json()
        else:
            raise ValueError(f"path: expected a .html, .htm or .json file name; got {str(path)!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def _repr_html_(self) -> str:
        return self.to_html()


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _fmt(value: float, spec: str) -> str:
    width = int(spec.split(".")[0])
    return format(value, spec) if math.isfinite(value) else f"{'-inf':>{width}}"


def _jsonable(obj: Any) -> Any:
    """Numpy scalars and arrays as Python objects; non-finite floats as ``None``."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj
