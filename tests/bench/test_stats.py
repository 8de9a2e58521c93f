"""Every formula checked against statsmodels / scipy, and the ASSETS.md power figures."""

import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint
from statsmodels.stats.weightstats import ttost_paired

from openparity.bench import stats

rng = np.random.default_rng(7)


def test_wilson_interval_for_binary_scores():
    scores = [1] * 30 + [0] * 70
    est = stats.mean_ci(scores)
    low, high = proportion_confint(30, 100, method="wilson")
    assert (est.mean, est.low, est.high) == (0.3, pytest.approx(low), pytest.approx(high))


def test_clustered_se_matches_statsmodels_cluster_covariance():
    clusters = np.repeat(np.arange(40), 5)
    story_effect = rng.normal(0, 0.3, 40)[clusters]
    scores = np.clip(0.5 + story_effect + rng.normal(0, 0.2, 200), 0, 1)
    est = stats.mean_ci(scores, [str(c) for c in clusters])
    fit = sm.OLS(scores, np.ones(200)).fit(cov_type="cluster", cov_kwds={"groups": clusters})
    assert est.se == pytest.approx(float(fit.bse[0]), rel=1e-9)
    assert est.clusters == 40
    assert est.se > stats.mean_ci(scores).se  # ignoring clusters understates uncertainty


def test_paired_difference_matches_paired_t_se():
    a, b = rng.random(300), rng.random(300)
    est = stats.paired_difference(a, b)
    assert est.mean == pytest.approx(float(np.mean(a - b)))
    assert est.se == pytest.approx(float(sps.sem(a - b)))


def test_mcnemar_exact_matches_statsmodels():
    a = rng.random(500) < 0.6
    b = rng.random(500) < 0.5
    table = [[int((a & b).sum()), int((a & ~b).sum())], [int((~a & b).sum()), int((~a & ~b).sum())]]
    expected = mcnemar(table, exact=True).pvalue
    assert stats.mcnemar_exact(a.astype(float), b.astype(float)) == pytest.approx(expected)


def test_tost_matches_statsmodels_for_large_n():
    a = rng.random(5000)
    b = a + rng.normal(0.001, 0.05, 5000)
    margin = 0.0022
    ours = stats.tost_pvalue(stats.paired_difference(a, b), margin)
    theirs = ttost_paired(a, b, -margin, margin)[0]
    assert 0.01 < theirs < 0.5  # a case where the decision is not trivial
    assert ours == pytest.approx(theirs, rel=0.01)  # z vs t at df=4999


def test_tost_logic():
    tight = stats.Estimate(0.001, 0.001, 0, 0, 1000)
    assert stats.tost_pvalue(tight, 0.01) < 0.05
    loose = stats.Estimate(0.001, 0.02, 0, 0, 1000)
    assert stats.tost_pvalue(loose, 0.01) > 0.05


def test_power_figures_from_the_assets_table():
    sd = stats.paired_sd(0.5, 0.5)
    assert sd == pytest.approx(0.5)
    for n, detectable, provable in [(164, 10.9, 11.4), (1319, 3.9, 4.0), (14042, 1.2, 1.2)]:
        assert stats.detectable_difference(sd, n) * 100 == pytest.approx(detectable, abs=0.05)
        assert stats.provable_margin(sd, n) * 100 == pytest.approx(provable, abs=0.05)


def test_items_needed_inverts_provable_margin():
    sd = 0.5
    n = stats.items_needed(sd, 0.015)
    assert stats.provable_margin(sd, n) <= 0.015 < stats.provable_margin(sd, n - 1)


def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    p = [0.01, 0.04, 0.03, 0.2]
    assert stats.holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]))


def test_paired_bootstrap_agrees_with_the_normal_interval():
    a = (rng.random(2000) < 0.6).astype(float)
    b = (rng.random(2000) < 0.55).astype(float)
    normal = stats.paired_difference(a, b)
    low, high = stats.paired_bootstrap(a, b, resamples=4000)
    assert low == pytest.approx(normal.low, abs=0.01) and high == pytest.approx(
        normal.high, abs=0.01
    )
    clusters = [str(i // 10) for i in range(2000)]
    c_low, c_high = stats.paired_bootstrap(a, b, clusters, resamples=4000)
    assert c_low < c_high


def test_pass_at_k_matches_the_combinatorial_definition():
    for n, c, k in [(10, 3, 1), (10, 3, 5), (20, 0, 3), (5, 5, 2), (200, 17, 10)]:
        exact = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert stats.pass_at_k(n, c, k) == pytest.approx(exact)
    with pytest.raises(ValueError):
        stats.pass_at_k(3, 1, 5)


def test_verdicts():
    sd = 0.5
    eq = stats.Estimate(0.0, 0.001, -0.002, 0.002, 20000)
    assert stats.verdict(eq, 1.0, 0.001, 0.007, sd).word == "equivalent"
    worse = stats.Estimate(-0.2, 0.02, -0.24, -0.16, 500)
    assert stats.verdict(worse, 1e-9, 1.0, 0.01, sd).word == "open worse"
    unknown = stats.Estimate(0.01, 0.04, -0.07, 0.09, 164)
    v = stats.verdict(unknown, 0.8, 0.6, 0.015, sd)
    assert v.word == "inconclusive" and "needs ~" in v.explanation


def test_exact_one_sample_tests_against_a_target():
    p_diff, p_eq = stats.binomial_tests(2, 100, 0.941, 0.012)
    assert p_diff < 1e-50 and p_eq == pytest.approx(1.0)
    p_diff, p_eq = stats.binomial_tests(9410, 10000, 0.941, 0.012)
    assert p_diff > 0.5 and p_eq < 1e-4
    expected = sps.binomtest(9410, 10000, 0.941 - 0.012, alternative="greater").pvalue
    assert p_eq == pytest.approx(
        max(expected, sps.binomtest(9410, 10000, 0.953, alternative="less").pvalue)
    )
