"""Verdict thresholds, the random-effects meta-analysis against a hand-computed case, and
pooling on the log rate ratio: A/A experiments pool to no effect."""

import math

import numpy as np
import pytest

from analysis.contrasts import variant_log_ratios
from analysis.evidence import Study, Thresholds, random_effects, verdict

Z = 1.959963984540054


def study(name, log_effect, se):
    """A study whose log(p_level / p_baseline) has posterior mean `log_effect` and sd `se`."""
    return Study(name, log_effect, se)


def test_random_effects_matches_a_hand_computed_case():
    # y = (0.10, 0.30, -0.05), se = (0.05, 0.10, 0.08); by hand (DerSimonian-Laird):
    # w = (400, 100, 156.25); Σw = 656.25; fixed = (40 + 30 - 7.8125) / 656.25 = 0.094762
    # Q = 400(0.005238)² + 100(0.205238)² + 156.25(0.144762)² = 0.010975 + 4.212259 + 3.274385
    #   = 7.497619; df = 2; C = 656.25 - (160000 + 10000 + 24414.0625) / 656.25 = 360.0
    # τ² = (7.497619 - 2) / 360.0 = 0.0152712
    # w* = 1 / (v + τ²) = (56.2709, 39.5708, 46.1443) (v = 0.0025, 0.01, 0.0064); Σ = 141.986
    # μ = (5.62709 + 11.87124 - 2.30721) / 141.986 = 0.106990; se = 1 / √141.986 = 0.083922
    pooled = random_effects(
        [study("a", 0.10, 0.05), study("b", 0.30, 0.10), study("c", -0.05, 0.08)]
    )
    assert pooled.q == pytest.approx(7.497619, abs=1e-5)
    assert pooled.tau == pytest.approx(math.sqrt(0.0152712), abs=1e-5)
    assert math.log1p(pooled.lift) == pytest.approx(0.106990, abs=1e-5)
    assert math.log1p(pooled.high) - math.log1p(pooled.lift) == pytest.approx(
        Z * 0.083922, abs=1e-5
    )
    assert pooled.i_squared == pytest.approx((7.497619 - 2) / 7.497619, abs=1e-6)
    assert sum(pooled.weights) == pytest.approx(1.0)


def test_agreeing_studies_pool_to_the_fixed_effect():
    pooled = random_effects([study("a", 0.1, 0.05), study("b", 0.1, 0.05)])
    assert pooled.tau == 0.0 and pooled.i_squared == 0.0
    assert math.log1p(pooled.lift) == pytest.approx(0.1)
    assert math.log1p(pooled.high) - 0.1 == pytest.approx(Z * 0.05 / math.sqrt(2))


def test_one_study_is_itself():
    pooled = random_effects([study("a", 0.2, 0.1)])
    assert (pooled.log_lift, pooled.se) == pytest.approx((0.2, 0.1))
    assert (pooled.lift, pooled.low, pooled.high) == pytest.approx(
        (math.expm1(0.2), math.expm1(0.2 - Z * 0.1), math.expm1(0.2 + Z * 0.1))
    )


def test_a_study_read_from_an_interval_is_its_centre_on_the_log_scale():
    read = Study.from_interval("a", math.expm1(0.1 - Z * 0.05), math.expm1(0.1 + Z * 0.05))
    assert (read.log_lift, read.se) == pytest.approx((0.1, 0.05))
    with pytest.raises(ValueError):
        Study.from_interval("b", 0.2, 0.1)
    with pytest.raises(ValueError):
        Study("c", 0.1, 0.0)


@pytest.mark.parametrize(
    ("prob", "low", "high", "expected"),
    [
        (0.95, 0.01, 0.2, "win"),
        (0.9499, -0.01, 0.2, "inconclusive"),
        (0.05, -0.2, -0.01, "loss"),
        (0.6, -0.019, 0.02, "flat"),
        (0.6, -0.021, 0.02, "inconclusive"),
        # A precisely measured +1% (or −1.5%) is negligible, however sure its sign: flat.
        (0.999, 0.005, 0.015, "flat"),
        (0.001, -0.019, -0.011, "flat"),
    ],
)
def test_verdict_thresholds(prob, low, high, expected):
    assert verdict(prob, low, high, discovered=True) == expected


@pytest.mark.parametrize(("prob", "low", "high"), [(0.999, 0.05, 0.2), (0.001, -0.2, -0.05)])
def test_a_win_or_a_loss_must_be_a_discovery(prob, low, high):
    assert verdict(prob, low, high, discovered=False) == "inconclusive"


def test_thresholds_can_be_stricter_and_are_checked():
    strict = Thresholds(win_probability=0.99)
    assert verdict(0.97, 0.01, 0.2, strict, discovered=True) == "inconclusive"
    assert verdict(0.6, -0.04, 0.04, Thresholds(flat_margin=0.05), discovered=True) == "flat"
    with pytest.raises(ValueError):
        Thresholds(win_probability=0.4)
    with pytest.raises(ValueError):
        Thresholds(false_discovery_rate=0)
    with pytest.raises(ValueError):
        random_effects([])


def test_aa_experiments_pool_to_no_effect_on_the_log_ratio():
    """400 registries of 8 A/A experiments (1%, 2,000 units an arm), each published as the
    learnings do: pooled on θ's posterior mean and sd, the effect centres on 0 and the
    interval misses it as often upward as downward; pooled on log(1 + the lift's mean) it
    came out about +5%, missing 0 upward only."""
    rng = np.random.default_rng(8)
    conversions = rng.binomial(2_000, 0.01, size=(400, 8, 2))
    new, old = [], []
    for registry in conversions:
        studies, biased = [], []
        for i, (c0, c1) in enumerate(registry):
            if c0 == 0:  # no lift mean: left out, as the evidence query does
                continue
            _, theta = variant_log_ratios([[2_000, 2_000]], [[c0, c1]], control=0, stratify=False)
            studies.append(Study(str(i), theta.mean, theta.sd))
            mean = (1 + c1) / 2_002 * 2_001 / c0 - 1  # E[p1]·E[1/p0] − 1, Beta(1, 1) priors
            biased.append(Study(str(i), math.log1p(mean), theta.sd))
        for found, pooled in ((new, random_effects(studies)), (old, random_effects(biased))):
            found.append((pooled.log_lift, pooled.low > 0, pooled.high < 0))
    centre, upward, downward = np.mean(new, axis=0)
    assert abs(centre) < 0.01 and upward < 0.04 and downward < 0.04
    assert abs(upward - downward) < 0.02
    centre, upward, downward = np.mean(old, axis=0)
    assert centre > 0.04 and upward > 0.03 and downward < 0.01
