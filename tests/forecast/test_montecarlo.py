"""The Monte Carlo forecast: copula, closed-form recovery, sampling schemes, clear errors."""

import json

import numpy as np
import pytest
from scipy import stats

from openparity.forecast.cli import DEFAULT_SCENARIO
from openparity.forecast.montecarlo import correlate, forecast
from openparity.forecast.scenario import ScenarioError, load_scenario
from tests.browser import render
from tests.cli import openparity


def scenario_file(tmp_path, body):
    path = tmp_path / "s.yaml"
    path.write_text(body, encoding="utf-8")
    return path


ONE_FACTOR = """
name: one
factors:
  a:
    push: {{dist: normal, mean: 0.3, sd: 0.1}}
    weight: 1
link: {{kind: threshold, threshold: 0.35, noise_sd: {noise}}}
"""


def test_gaussian_copula_reproduces_its_correlation_matrix():
    target = np.array([[1.0, 0.6, -0.3], [0.6, 1.0, 0.2], [-0.3, 0.2, 1.0]])
    z = np.random.default_rng(3).standard_normal((200_000, 3))
    latent = correlate(z, target)
    # sampling error of a correlation is about (1 - rho^2) / sqrt(n) < 0.003 here
    assert np.corrcoef(latent.T) == pytest.approx(target, abs=0.01)
    assert latent.std(axis=0) == pytest.approx([1, 1, 1], abs=0.01)  # margins stay standard


@pytest.mark.parametrize("sampling", ["mc", "lhs", "sobol"])
@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_closed_form_probability_is_recovered(tmp_path, sampling, noise):
    result = forecast(
        load_scenario(scenario_file(tmp_path, ONE_FACTOR.format(noise=noise))),
        draws=2**16,
        seed=1,
        sampling=sampling,
        sensitivity=False,
    )
    exact = stats.norm.sf((0.35 - 0.3) / np.hypot(0.1, noise))
    assert abs(result.probability - exact) < 3 * result.standard_error


def test_correlated_sum_against_its_exact_distribution(tmp_path):
    """Two normal pushes with correlation 0.5: the sum is normal with a known variance."""
    body = """
name: two
factors:
  a: {push: {dist: normal, mean: 0.2, sd: 0.1}, weight: 1}
  b: {push: {dist: normal, mean: 0.1, sd: 0.2}, weight: 1}
correlations: [[a, b, 0.5]]
link: {kind: threshold, threshold: 0.5}
"""
    result = forecast(load_scenario(scenario_file(tmp_path, body)), draws=400_000, seed=2)
    sd = np.sqrt(0.1**2 + 0.2**2 + 2 * 0.5 * 0.1 * 0.2)
    exact = stats.norm.sf((0.5 - 0.3) / sd)
    assert abs(result.probability - exact) < 3 * result.standard_error


def test_seed_scenario_reproduces_its_72_percent_and_is_reproducible():
    scenario = load_scenario(DEFAULT_SCENARIO)
    assert len(scenario.factors) == 10
    first = forecast(scenario, draws=100_000, seed=7, sensitivity=False)
    again = forecast(scenario, draws=100_000, seed=7, sensitivity=False)
    assert first.probability == again.probability
    assert abs(first.probability - 0.72) < 3 * first.standard_error + 0.002
    assert first.convergence[-1][0] == 100_000


def test_sensitivity_ranks_the_factors(tmp_path):
    body = """
name: two
factors:
  strong: {push: {dist: uniform, low: 0, high: 1}, weight: 0.9}
  weak: {push: {dist: uniform, low: 0, high: 1}, weight: 0.1}
link: {kind: logistic, intercept: -2.5, scale: 5}
"""
    result = forecast(load_scenario(scenario_file(tmp_path, body)), draws=50_000, seed=0)
    assert [b.factor for b in result.tornado] == ["strong", "weak"]
    sobol = {s.input: s for s in result.sobol}
    assert sobol["strong:push"].total > 10 * sobol["weak:push"].total
    assert 0 < sobol["strong:push"].first_order <= 1.05


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("name: [x\n", "not valid YAML"),
        ("name: x\nfactors: {}\nlink: {kind: threshold}\n", "factors"),
        (
            "name: x\nfactors:\n  a: {push: {dist: triangular, low: 1, mode: 0.5, high: 0.2},"
            " weight: 1}\nlink: {kind: threshold}\n",
            "low <= mode <= high",
        ),
        (
            "name: x\nfactors:\n  a: {push: {dist: beta, a: -1, b: 2}, weight: 1}\n"
            "link: {kind: threshold}\n",
            "greater than 0",
        ),
        (
            "name: x\nfactors:\n  a: {push: {dist: gamma, k: 2}, weight: 1}\n"
            "link: {kind: threshold}\n",
            "dist",
        ),
        (
            "name: x\nfactors:\n  a: {push: {dist: uniform, low: 0, high: 1}, weight: 1}\n"
            "correlations: [[a, zz, 0.3]]\nlink: {kind: threshold}\n",
            "unknown factor 'zz'",
        ),
    ],
)
def test_bad_scenarios_are_clear(tmp_path, body, fragment):
    with pytest.raises(ScenarioError) as info:
        load_scenario(scenario_file(tmp_path, body))
    assert fragment in info.value.one_line()


def test_non_psd_correlations_are_refused(tmp_path):
    body = """
name: impossible
factors:
  a: {push: {dist: uniform, low: 0, high: 1}, weight: 1}
  b: {push: {dist: uniform, low: 0, high: 1}, weight: 1}
  c: {push: {dist: uniform, low: 0, high: 1}, weight: 1}
correlations: [[a, b, 0.9], [b, c, 0.9], [a, c, -0.9]]
link: {kind: threshold}
"""
    with pytest.raises(ScenarioError, match="not positive semi-definite"):
        load_scenario(scenario_file(tmp_path, body))


@pytest.mark.slow
def test_cli_json_and_html(tmp_path):
    run = ("forecast", "--draws", "20000")
    result = openparity(*run, "--format", "json", timeout=120)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["scenario"] == "seed-parity-2027" and 0.69 < data["probability"] < 0.75
    assert len(data["tornado"]) == 10 and data["sobol"]
    html_file = tmp_path / "forecast.html"
    result = openparity(*run, "--output", str(html_file), timeout=120)
    assert result.returncode == 0, result.stderr
    page = render(html_file.read_text(encoding="utf-8"), tmp_path)
    assert page.dom.count("<svg") == 2 and "Tornado" in page.dom
    assert ":CONSOLE" not in page.console and page.pixels.std() > 0.05
    bad = openparity(*run, "--sampling", "grid", timeout=60)
    assert bad.returncode == 2 and "unknown sampling 'grid'" in bad.stderr


@pytest.mark.parametrize(
    ("a", "b"), [(3, 3), (4, 3), (2, 8), (0.5, 0.5), (0.3, 4), (40, 2), (1, 1), (1, 5)]
)
def test_the_tabulated_copula_inverse_gives_the_exact_inverses_numbers(a, b):
    """The interpolated beta inverse (used from 50,000 values) against the exact one, on
    normal draws and on the tails, infinities and NaN where the table hands over."""
    from scipy import special

    from openparity.forecast.marginals import TABLE_FROM, copula_ppf, ppf

    z = np.random.default_rng(int(a * 10 + b)).standard_normal(TABLE_FROM + 11)
    z[:11] = [-np.inf, -40, -8.6, -8.5, -1e-300, 0.0, 8.49999, 8.5, 9.0, np.inf, np.nan]
    dist = stats.beta(a, b, loc=-1, scale=3)
    tabulated, exact = copula_ppf(dist, z), ppf(dist, special.ndtr(z))
    assert np.array_equal(np.isnan(tabulated), np.isnan(exact))
    assert np.nanmax(np.abs(tabulated - exact)) <= 3e-12


def test_a_forecast_keeps_its_numbers_with_the_tabulated_inverse(monkeypatch):
    """The seed scenario's probability and tornado with and without the table."""
    import openparity.forecast.marginals as marginals

    scenario = load_scenario(DEFAULT_SCENARIO)
    tabulated = forecast(scenario, draws=60_000, seed=5)
    monkeypatch.setattr(marginals, "TABLE_FROM", 10**12)
    exact = forecast(scenario, draws=60_000, seed=5)
    assert tabulated.probability == pytest.approx(exact.probability, abs=1e-12)
    assert tabulated.standard_error == pytest.approx(exact.standard_error, abs=1e-12)
    for mine, theirs in zip(tabulated.tornado, exact.tornado, strict=True):
        assert mine.factor == theirs.factor
        assert (mine.low, mine.high) == pytest.approx((theirs.low, theirs.high), abs=1e-12)
