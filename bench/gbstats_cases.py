"""Runs inside gbstats' own virtualenv (gbstats pins an older numpy): reads cases as JSON
[[n_control, conversions_control, n_variant, conversions_variant], ...] from stdin and prints
gbstats' Bayesian chance to win for each, relative and absolute, as JSON."""

import json
import sys

from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig
from gbstats.models.statistics import ProportionStatistic


def chance(n0, c0, n1, c1, difference_type):
    test = EffectBayesianABTest(
        ProportionStatistic(n=n0, sum=c0),
        ProportionStatistic(n=n1, sum=c1),
        EffectBayesianConfig(difference_type=difference_type),
    )
    return float(test.compute_result().chance_to_win)


cases = json.load(sys.stdin)
print(
    json.dumps({kind: [chance(*case, kind) for case in cases] for kind in ("relative", "absolute")})
)
