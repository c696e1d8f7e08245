"""The HTML page of a `CalibrationReport`: one file, inline CSS, figures as base64 PNGs.

Every string that can come from a user or a file (task and parameter names, the
estimator's description, settings, statistic names) passes through
``html.escape``; numbers are formatted here. The page loads nothing from outside.
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from astroprob.report._report import CalibrationReport

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #212121; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f5f5f5; }
td.name, th.name { text-align: left; font-family: monospace; }
.badge { display: inline-block; padding: 0.1em 0.6em; border-radius: 0.8em; color: white;
         font-weight: 600; font-size: 0.9em; }
.overall { font-size: 1.3em; margin: 0.5em 0; }
.calibrated { background: #2e7d32; } .overconfident { background: #c62828; }
.underconfident { background: #ef6c00; } .biased { background: #6a1b9a; }
.consistent { background: #2e7d32; } .atypical { background: #c62828; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
figure { flex: 1 1 45%; margin: 0; min-width: 320px; }
figure.wide { flex-basis: 100%; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; max-width: 46em; }
.muted { color: #666; font-size: 0.85em; }
pre { background: #fafafa; border: 1px solid #eee; padding: 0.6em; overflow-x: auto;
      font-size: 0.8em; }
"""

_CAPTIONS = {
    "sbc_ranks": (
        "SBC: empirical CDF of the ranks of the true values among the posterior samples, minus "
        "the uniform CDF. A calibrated posterior stays inside the shaded simultaneous band. A "
        "positive hump means the true values tend to lie below the posterior (biased high), a "
        "negative one above it (biased low); positive on the left and negative on the right "
        "means too many extreme ranks (overconfident), the reverse too few (underconfident)."
    ),
    "coverage": (
        "Expected coverage of highest-posterior-density regions: how often the truth lies "
        "inside the credible region of each level. Below the diagonal: overconfident; above: "
        "underconfident (conservative)."
    ),
    "tarp": (
        "TARP expected coverage probability with random reference points and a bootstrap band."
    ),
    "recovery": "True parameters against posterior means, with ±1 posterior standard deviation.",
    "contraction": (
        "Posterior z-score against posterior contraction (1 − posterior variance / prior "
        "variance). Good: high contraction and |z| below about 3."
    ),
    "example_posterior": "Corner plot of the posterior of one held-out simulation.",
}

_WIDE = ("sbc_ranks", "recovery", "contraction")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float, spec: str = ".3g") -> str:
    value = float(value)
    return format(value, spec) if math.isfinite(value) else _e(str(value))


def _badge(verdict: str) -> str:
    cls = verdict if verdict.isidentifier() else "unknown"
    return f'<span class="badge {_e(cls)}">{_e(verdict)}</span>'


def render(report: CalibrationReport, images: dict[str, str]) -> str:
    """The page for ``report`` with figures ``images`` (name -> base64 PNG)."""
    v = report.verdict
    s = report.settings
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Calibration report: {_e(report.task)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Calibration report: {_e(report.task)}</h1>",
        f'<p class="muted">estimator: <code>{_e(report.estimator)}</code></p>',
        f'<p class="overall">Overall verdict: {_badge(v.overall)}</p>',
        "<p>"
        f"{_e(s.get('n'))} held-out simulations (fresh from the key, never used in training) "
        f"× {_e(s.get('num_samples'))} posterior samples each. Family-wise level "
        f"α = {_num(v.alpha, 'g')}, {_num(v.alpha_per_test)} per test (Bonferroni over "
        f"{len(v.p_values)} tests).</p>",
    ]
    if s.get("num_invalid"):
        parts.append(
            f"<p><b>{_e(s['num_invalid'])}</b> test simulations held NaN or inf and were left "
            "out.</p>"
        )
    parts += _parameter_table(report)
    parts += _joint_table(report)
    if report.predictive is not None:
        parts += _predictive_table(report)
    parts.append('<h2>Figures</h2><div class="figures">')
    for name, data in images.items():
        caption = _CAPTIONS.get(name, name)
        wide = ' class="wide"' if name in _WIDE else ""
        parts.append(
            f'<figure{wide}><img alt="{_e(name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )
    parts.append("</div>")
    parts.append("<h2>Text summary</h2>")
    parts.append(f"<pre>{_e(str(report))}</pre>")
    parts.append("<h2>Settings</h2><table>")
    for key, value in {**report.settings, **report.metadata}.items():
        parts.append(f'<tr><td class="name">{_e(key)}</td><td class="name">{_e(value)}</td></tr>')
    parts.append("</table>")
    parts.append(
        '<p class="muted">Methods: SBC ranks with the exact ECDF test and simultaneous bands '
        "(Talts et al. 2018; Säilynoja et al. 2022), expected HPD coverage (Hermans et al. "
        "2022), TARP (Lemos et al. 2023), z-score and contraction (Schad et al. 2021).</p>"
    )
    parts.append("</body></html>")
    return "\n".join(parts)


def _parameter_table(report: CalibrationReport) -> list[str]:
    v, sbc, c = report.verdict, report.sbc, report.contraction
    rows = [
        "<h2>Per parameter</h2><table>",
        '<tr><th class="name">parameter</th><th>verdict</th><th>SBC p</th><th>log γ</th>'
        "<th>bias z</th><th>dispersion z</th><th>χ² p</th><th>KS p</th><th>mean z</th>"
        "<th>rms z</th><th>contraction</th></tr>",
    ]
    for j, name in enumerate(report.parameter_names):
        rows.append(
            f'<tr><td class="name">{_e(name)}</td><td>{_badge(v.parameters[name])}</td>'
            f"<td>{_num(sbc.p_value[j])}</td><td>{_num(sbc.log_gamma[j], '.2f')}</td>"
            f"<td>{_num(sbc.test.bias_z[j], '+.2f')}</td>"
            f"<td>{_num(sbc.test.dispersion_z[j], '+.2f')}</td>"
            f"<td>{_num(sbc.test.chi2_p_value[j])}</td><td>{_num(sbc.test.ks_p_value[j])}</td>"
            f"<td>{_num(c.mean_z[j], '+.2f')}</td><td>{_num(c.rms_z[j], '.2f')}</td>"
            f"<td>{_num(c.mean_contraction[j], '.2f')}</td></tr>"
        )
    rows.append("</table>")
    rows.append(
        '<p class="muted">bias z &gt; 0: true values above the posterior mass; dispersion z '
        "&gt; 0: too many extreme ranks (overconfident), &lt; 0: too few (underconfident). "
        "mean z = mean of (posterior mean − truth) / posterior std; rms z ≈ 1 when "
        "calibrated.</p>"
    )
    return rows


def _joint_table(report: CalibrationReport) -> list[str]:
    v, cov, tarp = report.verdict, report.coverage, report.tarp
    return [
        "<h2>Joint tests</h2><table>",
        '<tr><th class="name">test</th><th>verdict</th><th>p</th><th class="name">numbers</th>'
        "</tr>",
        f'<tr><td class="name">HPD coverage ({_e(cov.method)})</td>'
        f"<td>{_badge(v.joint['coverage'])}</td><td>{_num(cov.p_value)}</td>"
        f'<td class="name">mean(coverage − level) = {_num(cov.area, "+.3f")}</td></tr>',
        f'<tr><td class="name">TARP</td><td>{_badge(v.joint["tarp"])}</td>'
        f"<td>{_num(tarp.p_value)}</td>"
        f'<td class="name">ATC = {_num(tarp.atc, "+.3f")}, area = {_num(tarp.area, ".3f")}</td>'
        "</tr>",
        "</table>",
    ]


def _predictive_table(report: CalibrationReport) -> list[str]:
    p = report.predictive
    head = "".join(f"<th>{_e(name)}</th>" for name in p.names)
    rows = [
        "<h2>Posterior predictive checks</h2>",
        f"<p>p-values per statistic (α = {_num(p.alpha, 'g')} per observation, Bonferroni over "
        "statistics); an atypical observation is unlike what the simulator makes from its "
        "posterior.</p><table>",
        f'<tr><th class="name">observation</th><th>verdict</th>{head}</tr>',
    ]
    for i, verdict in enumerate(p.verdict):
        cells = "".join(f"<td>{_num(value)}</td>" for value in np.asarray(p.p_value[i]))
        rows.append(f'<tr><td class="name">{i}</td><td>{_badge(verdict)}</td>{cells}</tr>')
    rows.append("</table>")
    return rows
