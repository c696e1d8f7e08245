"""The calibration report: verdicts, text, JSON, one self-contained HTML file, escaping."""

import base64
import html
import json
import re

import jax
import numpy as np
import pytest
from _fake import ExactEstimator, make_task

import astroprob as ap
from astroprob.report import CalibrationReport, figures

N, L = 150, 120


@pytest.fixture(scope="module")
def good_report():
    task = make_task()
    return ap.calibrate(
        jax.random.key(0),
        ExactEstimator(),
        task,
        n=N,
        num_samples=L,
        observations=np.array([[0.1, -0.2], [9.0, -9.0]]),
        num_predictive=200,
    )


def test_exact_estimator_is_reported_calibrated(good_report):
    r = good_report
    assert isinstance(r, CalibrationReport)
    assert r.calibrated
    assert r.verdict.overall == "calibrated"
    assert r.verdict.parameters == {"a": "calibrated", "b": "calibrated"}
    assert r.sbc.ranks.shape == (N, 2)
    assert r.coverage.method == "log_prob"
    assert r.predictive.verdict == ("consistent", "atypical")
    assert r.example_samples.shape == (L, 2)


@pytest.mark.parametrize(("scale", "verdict"), [(0.5, "overconfident"), (2.0, "underconfident")])
def test_miscalibrated_estimator_gets_its_verdict_per_parameter(scale, verdict):
    report = ap.calibrate(
        jax.random.key(1), ExactEstimator(scale=scale), make_task(), n=N, num_samples=L
    )
    assert report.verdict.overall == verdict
    assert report.verdict.parameters == {"a": verdict, "b": verdict}
    assert verdict.upper() in str(report)


def test_text_summary_fits_one_screen_and_has_the_numbers(good_report):
    text = str(good_report)
    lines = text.splitlines()
    assert len(lines) <= 40
    assert max(map(len, lines)) <= 120
    assert "OVERALL: CALIBRATED" in text
    assert re.search(r"^a\s+calibrated\s+[\d.e-]+", text, re.MULTILINE)
    assert "HPD coverage" in text
    assert "TARP" in text
    assert "2 observations, 1 atypical" in text


def test_to_dict_round_trips_through_strict_json(good_report):
    data = json.loads(good_report.to_json())
    assert data["format"] == "astroprob-calibration-report"
    assert data["verdict"]["overall"] == "calibrated"
    assert set(data["parameters"]) == {"a", "b"}
    assert data["parameters"]["a"]["sbc_p_value"] == pytest.approx(
        float(good_report.sbc.p_value[0])
    )
    assert len(data["coverage"]["levels"]) == len(data["coverage"]["coverage"])
    assert data["settings"]["n"] == N
    assert "ranks" not in data["sbc"]
    assert len(good_report.to_dict(include_ranks=True)["sbc"]["ranks"]) == N


def test_html_is_one_self_contained_file(good_report, tmp_path):
    path = good_report.save(tmp_path / "report.html")
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 6  # ranks, coverage, tarp, recovery, contraction, corner
    for data in images:
        assert base64.b64decode(data).startswith(b"\x89PNG")
    # Nothing is fetched from elsewhere: no external sources, links or scripts.
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert "<script" not in page
    json_path = good_report.save(tmp_path / "report.json")
    assert json.loads(json_path.read_text())["task"] == "toy_gaussian"
    with pytest.raises(ValueError, match=r"path: expected a .html, .htm or .json file name"):
        good_report.save(tmp_path / "report.pdf")


def test_strings_from_users_are_escaped_in_html(tmp_path):
    evil = '<script>alert("x")</script>'
    task = make_task(name=evil, parameter_names=("<b>a</b>", 'b"&'))
    report = ap.calibrate(
        jax.random.key(2),
        ExactEstimator(label="<img src=x onerror=alert(1)>"),
        task,
        n=N,
        num_samples=L,
    )
    page = report.to_html()
    assert "<script" not in page
    assert "<img src=x" not in page
    assert "<b>a</b>" not in page
    assert html.escape(evil) in page
    assert html.escape("<b>a</b>") in page
    assert html.escape('b"&') in page
    assert html.escape("<img src=x onerror=alert(1)>") in page


def test_reliability_figure_renders():
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3], [0.2, 0.8]] * 50)
    labels = np.array([0, 1, 1, 1] * 50)
    result = ap.diagnostics.classification_calibration(jax.random.key(0), probs, labels)
    assert figures.to_png(figures.reliability_figure(result), dpi=40).startswith(b"\x89PNG")


def test_warns_once_for_small_test_sets():
    with pytest.warns(UserWarning, match="calibrate: n=30") as record:
        ap.calibrate(jax.random.key(3), ExactEstimator(), make_task(), n=30, num_samples=L)
    assert len(record) == 1


def test_bad_arguments_are_reported():
    with pytest.raises(TypeError, match="task"):
        ap.calibrate(jax.random.key(0), ExactEstimator(), "toy_gaussian")
    with pytest.raises(TypeError, match="estimator: expected a trained estimator"):
        ap.calibrate(jax.random.key(0), object(), make_task(), n=N)
