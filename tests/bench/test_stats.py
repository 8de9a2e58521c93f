"""Every formula checked against statsmodels / scipy, and the ASSETS.md power figures."""

import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats as sps
from scipy.optimize import minimize_scalar
from statsmodels.stats.proportion import proportion_confint
from statsmodels.stats.weightstats import ttost_paired

from openparity.bench import stats
from openparity.bench.errors import ScoresError

rng = np.random.default_rng(7)


def test_binary_accuracy_gets_the_exact_clopper_pearson_interval():
    est = stats.mean_ci([1] * 30 + [0] * 70)
    low, high = proportion_confint(30, 100, method="beta")
    assert (est.mean, est.low, est.high) == (0.3, pytest.approx(low), pytest.approx(high))
    assert est.method == "Clopper-Pearson"


def test_clustered_se_is_cr2_with_bell_mccaffrey_df():
    clusters = np.repeat(np.arange(40), 5)
    story_effect = rng.normal(0, 0.3, 40)[clusters]
    scores = np.clip(0.5 + story_effect + rng.normal(0, 0.2, 200), 0, 1)
    est = stats.mean_ci(scores, [str(c) for c in clusters])
    fit = sm.OLS(scores, np.ones(200)).fit(cov_type="cluster", cov_kwds={"groups": clusters})
    # with equal cluster sizes CR2 equals statsmodels' CR1, and Bell-McCaffrey df is G - 1
    assert est.se == pytest.approx(float(fit.bse[0]), rel=1e-9)
    assert est.clusters == 40 and est.df == pytest.approx(39)
    half = sps.t.ppf(0.975, 39) * est.se
    assert est.high - est.mean == pytest.approx(half)
    assert est.se > stats.mean_ci(scores).se  # ignoring clusters understates uncertainty
    unequal = [str(i) for i in np.repeat(np.arange(5), [1, 2, 3, 10, 30])]
    assert stats.cluster_robust(rng.random(46), unequal).df < 4  # fewer df when sizes differ


def test_unclustered_partial_credit_is_the_paired_t_test_when_the_differences_are_symmetric():
    """Hall's skewness correction vanishes when the sample has no skewness: then this is the
    paired t test and its TOST."""
    half = rng.random(150) * 0.4
    b = 0.3 + rng.random(300) * 0.4
    a = b + np.concatenate([half, -half]) * 0.5 + 0.01
    tests = stats.paired_tests(a, b, 0.05)
    assert "Hall" in tests.method
    assert tests.diff.mean == pytest.approx(float(np.mean(a - b)))
    assert tests.diff.se == pytest.approx(float(sps.sem(a - b)))
    assert tests.p_difference == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert tests.p_equivalence == pytest.approx(ttost_paired(a, b, -0.05, 0.05)[0])


def test_the_paired_binary_verdict_and_its_interval_are_one_method():
    """5 items only the open model got right, none the other way: the old exact McNemar said
    "no difference" (p = 0.0625) while the printed Tango interval excluded 0. Now the test
    is the score test the interval inverts: both say the same, for every split of 0-12
    discordant items."""
    for only_a in range(13):
        for only_b in range(13 - only_a):
            a = np.array([1.0] * only_a + [0.0] * only_b + [1.0] * 40)
            b = np.array([0.0] * only_a + [1.0] * only_b + [1.0] * 40)
            tests = stats.paired_tests(a, b, 0.05)
            excludes_zero = tests.diff.low > 0 or tests.diff.high < 0
            assert (tests.p_difference < 0.05) == excludes_zero, (only_a, only_b, tests)
    five = stats.paired_tests([1.0] * 5 + [1.0] * 40, [0.0] * 5 + [1.0] * 40, 0.05)
    assert five.p_difference > 0.05 and five.diff.low <= 0


def test_tango_restricted_mle_maximises_the_constrained_likelihood():
    for b, c, n, d0 in [(12, 3, 200, 0.02), (0, 0, 50, -0.01), (5, 9, 1000, 0.012), (1, 0, 3, 0.3)]:

        def negative_loglik(x, b=b, c=c, n=n, d0=d0):
            cells = np.array([x + d0, x, 1 - 2 * x - d0])
            counts = np.array([b, c, n - b - c])
            return -float(np.sum(counts * np.log(np.maximum(cells, 1e-300))))

        upper = (1 - d0) / 2
        best = minimize_scalar(
            negative_loglik,
            bounds=(max(0.0, -d0), upper),
            method="bounded",
            options={"xatol": 1e-12},
        )
        z = stats._tango_z(b, c, n, d0, correction=0.0)
        var = (b - c - n * d0) ** 2 / z**2 / n if z else None
        if var is not None:  # Var = n (2 x + d0 (1 - d0)) at the restricted MLE x
            assert (var - d0 * (1 - d0)) / 2 == pytest.approx(best.x, abs=1e-6)


def test_no_spread_is_not_certainty():
    """Three items both models got right, and one story's four questions: no verdict."""
    three = stats.paired_tests([1, 1, 1], [1, 1, 1], 0.012)
    assert three.p_equivalence > 0.05 and three.diff.low < -0.5 and three.diff.high > 0.5
    v = stats.verdict(three.diff, three.p_difference, three.p_equivalence, 0.012, 0.5)
    assert v.word == "inconclusive" and "needs ~" in v.explanation
    story = stats.paired_tests([0.9, 0.8, 1.0, 0.7], [0.2, 0.1, 0.3, 0.2], 0.05, ["s1"] * 4)
    assert (story.p_difference, story.p_equivalence) == (1.0, 1.0)
    v = stats.verdict(story.diff, story.p_difference, story.p_equivalence, 0.05, 0.3)
    assert v.word == "inconclusive" and "one cluster" in v.explanation
    flat = stats.paired_tests([0.5] * 6, [0.5] * 6, 0.05)  # partial credit, identical
    assert flat.p_equivalence == 1.0 and not flat.diff.informative


def test_tango_interval_inverts_its_test_and_holds_the_estimate():
    b, c, n = np.array([3, 0, 10, 40]), np.array([1, 0, 2, 38]), 300
    low, high = stats.tango_interval(b, c, n)
    d = (b - c) / n
    assert np.all(low <= d) and np.all(d <= high)
    z = stats._tango_z(b, c, n, high + 1e-6)
    assert np.all(np.abs(z) > sps.norm.ppf(0.975))  # just outside: rejected
    assert np.all(np.abs(stats._tango_z(b, c, n, high - 1e-6)) <= sps.norm.ppf(0.975))


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


@pytest.mark.slow
def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    draws = np.random.default_rng(3)
    cases = [[0.01, 0.04, 0.03, 0.2], [0.02, 0.02, 0.5, 1.0], [0.3], [0.9, 0.001, 0.9]]
    cases += [list(draws.random(k) ** 3) for k in (2, 5, 12)]
    for p in cases:
        assert stats.holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]))
    assert stats.holm([]) == []


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


def test_exact_one_sample_tests_against_a_target_of_unknown_n():
    p_diff, p_eq = stats.binomial_tests(2, 100, 0.941, 0.012)
    assert p_diff < 1e-50 and p_eq == pytest.approx(1.0)
    p_diff, p_eq = stats.binomial_tests(9410, 10000, 0.941, 0.012)
    assert p_diff > 0.5 and p_eq < 1e-4
    expected = sps.binomtest(9410, 10000, 0.941 - 0.012, alternative="greater").pvalue
    assert p_eq == pytest.approx(
        max(expected, sps.binomtest(9410, 10000, 0.953, alternative="less").pvalue)
    )
    tests = stats.target_tests([1.0] * 90 + [0.0] * 10, 0.941, 0.012)
    assert "unknown n" in tests.method and tests.p_difference == pytest.approx(
        sps.binomtest(90, 100, 0.941).pvalue
    )


def test_a_published_number_of_known_n_brings_its_own_sampling_error():
    from statsmodels.stats.proportion import test_proportions_2indep

    scores = [1.0] * 1220 + [0.0] * 99  # 92.5 % on GSM8K's 1319 against the seed's 94.1
    exact = stats.target_tests(scores, 0.941, 0.012)
    measured = stats.target_tests(scores, 0.941, 0.012, target_n=1319)
    assert exact.p_difference < 0.05 < measured.p_difference  # not a constant: a measurement
    expected = test_proportions_2indep(1220, 1319, 0.941 * 1319, 1319, method="score").pvalue
    assert measured.p_difference == pytest.approx(expected)
    assert "published 94.1 % of 1319" in measured.method
    assert measured.diff.mean == pytest.approx(1220 / 1319 - 0.941)  # not rounded to a count
    assert measured.diff.high - measured.diff.low > exact.diff.high - exact.diff.low


def test_clustered_binary_scores_get_a_cluster_aware_difference_test():
    """The score test treats every item as independent; with shared contexts it is CR2."""
    clusters = [f"s{i // 6}" for i in range(60)]
    story = rng.random(10)
    a = np.array([float(rng.random() < story[i // 6]) for i in range(60)])
    b = np.array([float(rng.random() < story[i // 6]) for i in range(60)])
    tests = stats.paired_tests(a, b, 0.05, clusters)
    assert "sign-flip" in tests.method and tests.diff.clusters == 10
    assert tests.diff.se == pytest.approx(stats.cluster_robust(a - b, clusters).se)


def test_skewed_partial_credit_gets_hall_s_correction_and_too_much_skew_claims_nothing():
    draws = np.random.default_rng(3)
    d = 0.05 * (1.0 - draws.gamma(1.0, 1.0, 60))  # left-skewed, skewness about -2
    tests = stats.paired_tests(0.5 + d / 2, 0.5 - d / 2, 0.05)
    assert "Hall" in tests.method and tests.p_difference != pytest.approx(
        sps.ttest_rel(0.5 + d / 2, 0.5 - d / 2).pvalue
    )
    spike = np.array([0.0] * 19 + [0.9])  # one item moved, nineteen did not: skewness 4.5
    found = stats.paired_tests(0.05 + spike, np.full(20, 0.05), 0.05)
    assert "too skewed" in found.method and not found.diff.informative
    said = stats.verdict(found.diff, found.p_difference, found.p_equivalence, 0.05, 0.2)
    assert said.word == "inconclusive" and "too skewed for n" in said.explanation


def test_round_off_is_not_spread():
    """30 items all 0.3 against all 0.1: the differences are 0.2 up to round-off (SE 1e-17),
    which used to read as "open better, p = 0, [20.0, 20.0]"."""
    tests = stats.paired_tests([0.3] * 30, [0.1] * 30, 0.02)
    assert not tests.diff.informative and tests.p_difference == 1.0
    said = stats.verdict(tests.diff, tests.p_difference, tests.p_equivalence, 0.02, 0.1)
    assert said.word == "inconclusive" and "no spread" in said.explanation


def test_no_spread_of_its_own_is_not_replaced_by_a_published_number_s_error():
    """Ten identical partial-credit scores of 0.885 against a published 88.5 % of 14042 used to
    be "equivalent": the target's error stood in for the run's missing one."""
    tests = stats.target_tests([0.885] * 10, 0.885, 0.02, target_n=14042)
    assert not tests.diff.informative and tests.p_equivalence == 1.0


def test_a_measured_target_s_error_gets_welch_degrees_of_freedom():
    scores = list(np.random.default_rng(4).random(12) * 0.5 + 0.25)
    tests = stats.target_tests(scores, 0.5, 0.05, target_n=40)
    own = stats.cluster_robust(scores)
    assert own.df < tests.diff.df < own.df + 39  # between the two samples' df


@pytest.mark.parametrize(
    "a, b",
    [
        ([], []),
        ([0.5, math.nan], [0.5, 0.5]),
        ([0.5, math.inf], [0.5, 0.5]),
        ([0.5, 1.5], [0.5, 0.5]),
        ([0.5, -0.1], [0.5, 0.5]),
        ([0.5, 0.5], [0.5]),
    ],
    ids=["empty", "nan", "inf", "above 1", "below 0", "unpaired"],
)
def test_scores_that_are_not_numbers_in_0_1_are_a_clear_error(a, b):
    with pytest.raises(ScoresError) as error:
        stats.paired_tests(a, b, 0.05)
    assert "\n" not in error.value.one_line()


def test_the_verdict_equivalent_names_the_interval_its_tost_inverts():
    """TOST at alpha = 0.05 is the 90 % interval inside the margin; the 95 % interval printed
    beside it may cross the margin, so the verdict names the 90 % one."""
    a = np.array([1.0] * 3 + [0.0] * 3 + [1.0] * 594)
    b = np.array([0.0] * 3 + [1.0] * 3 + [1.0] * 594)
    tests = stats.paired_tests(a, b, 0.012)
    said = stats.verdict(
        tests.diff,
        tests.p_difference,
        tests.p_equivalence,
        0.012,
        0.1,
        equivalence=tests.equivalence_interval,
    )
    assert said.word == "equivalent"
    eq = tests.equivalence_interval
    assert eq.low > -0.012 and eq.high < 0.012 and "90% CI" in said.explanation
    assert tests.diff.low < -0.012 < eq.low  # the 95 % interval crosses the margin here


def _run_scores(model: str, values, clusters=None):
    from openparity.bench.comparison import RunScores
    from openparity.bench.store import RunInfo

    ids = [f"q{i:03d}" for i in range(len(values))]
    run = RunInfo(model, model, "mmlu", {}, ids, "sim", False, "accuracy", 0.02)
    cluster_of = dict(zip(ids, clusters or [None] * len(ids), strict=True))
    return RunScores(run, dict(zip(ids, map(float, values), strict=True)), cluster_of, 0, 0)


def test_power_notes_carry_the_cluster_design_effect():
    """15 stories of 6 items whose two models differ story by story: planning with the
    per-item SD alone promised far more than the data can give."""
    from openparity.bench.comparison import compare_scores

    draws = np.random.default_rng(8)
    clusters = [f"s{i // 6}" for i in range(90)]
    story = draws.random(15)
    a = [float(draws.random() < story[i // 6]) for i in range(90)]
    b = [float(draws.random() < 1 - story[i // 6]) for i in range(90)]
    clustered = compare_scores(_run_scores("open", a, clusters), _run_scores("closed", b, clusters))
    flat = compare_scores(_run_scores("open", a), _run_scores("closed", b))
    assert clustered.sd > 1.3 * flat.sd and clustered.provable > 1.3 * flat.provable


def test_a_margin_smaller_than_the_published_number_s_own_error_cannot_be_proven():
    """A published 50 % measured on 100 items carries a 5-point SE of its own: no number of
    our items proves +-2 points against it, and the verdict says so instead of "needs ~N"."""
    from openparity.bench.comparison import _common

    ours = [1.0, 0.0] * 200
    tests = stats.target_tests(ours, 0.5, 0.02, target_n=100)
    fields = _common(_run_scores("open", ours), tests, 0.5, stats.mean_ci(ours), False, 0.0025)
    assert fields["verdict"].word == "inconclusive"
    assert "cannot be proven at any number of items" in fields["verdict"].explanation
    assert fields["provable"] > 0.1  # the target's 100 items bound what 400 of ours can show
    assert stats.items_needed(0.5, 0.02, fixed_var=0.0025) is None


def test_an_exact_target_is_said_in_the_verdict():
    from openparity.bench.comparison import _common

    tests = stats.target_tests([1.0] * 90 + [0.0] * 10, 0.885, 0.02)
    fields = _common(
        _run_scores("open", [1.0] * 90 + [0.0] * 10),
        tests,
        0.3,
        stats.mean_ci([1.0] * 90 + [0.0] * 10),
        True,
    )
    assert "assumes the published number is exact" in fields["verdict"].explanation


def test_a_margin_no_task_size_could_prove_is_said_so():
    """MMLU has 14,042 items: a margin needing ~29,000 is not "underpowered, has 200", it
    cannot be proven on this task at all."""
    rng = np.random.default_rng(3)
    a = (rng.random(200) < 0.6).astype(float)
    b = (rng.random(200) < 0.6).astype(float)
    tests = stats.paired_tests(a, b, 0.01)
    sd = float(np.std(a - b, ddof=1))
    needed = stats.items_needed(sd, 0.01)
    assert needed > 14_042
    plain = stats.verdict(tests.diff, tests.p_difference, tests.p_equivalence, 0.01, sd)
    assert "underpowered" in plain.explanation
    bounded = stats.verdict(
        tests.diff, tests.p_difference, tests.p_equivalence, 0.01, sd, available=14_042
    )
    assert bounded.word == "inconclusive"
    assert "cannot be proven on this task at any size" in bounded.explanation
    assert "the task has 14042" in bounded.explanation


def test_identical_paired_values_say_why_there_is_no_interval():
    """fedprox equal to fedavg on every item printed "+0.000 [+nan, +nan]"."""
    from openparity.federated.cli import _versus

    tests = stats.paired_tests([0.15, 0.16, 0.31], [0.15, 0.16, 0.31], 0.01, None)
    assert not tests.diff.informative
    assert tests.diff.why_no_interval.startswith("every value is the same")
    d = tests.diff
    row = {
        "diff": d.mean,
        "low": d.low,
        "high": d.high,
        "no_interval": d.why_no_interval,
        "p": tests.p_difference,
    }
    shown = _versus(row)
    assert "nan" not in shown and "no interval: every value is the same" in shown
