"""PyMC models with real (small) NUTS runs: shrinkage of small segments toward the pool,
factorial effects recovered from simulated data, diagnostics reported; input validation."""

import itertools

import numpy as np
import pytest

from analysis.pymc_models import (
    Counts,
    FactorialModel,
    HierarchicalModel,
    SamplerSettings,
    factorial_problem,
)

SMALL = SamplerSettings(draws=400, tune=400, chains=2, seed=3)
LEVELS = list(itertools.product(["morning", "evening"], ["friendly", "urgent"], ["email", "push"]))
FACTORS = [dict(zip(["timing", "tone", "channel"], level, strict=True)) for level in LEVELS]


def expit(x):
    return 1 / (1 + np.exp(-x))


@pytest.mark.slow
def test_a_small_segments_effect_is_shrunk_toward_the_pool():
    rng = np.random.default_rng(4)
    # Five large segments where the variant lifts the logit by 0.2 (about +18% at 8%)...
    units = np.full((6, 2), 3_000)
    base = rng.normal(-2.4, 0.2, size=6)
    conversions = rng.binomial(units, expit(base[:, None] + np.array([0.0, 0.2])))
    # ...and a small one where, by chance, the variant converted 10 of 40 against 2 of 40.
    units[5] = [40, 40]
    conversions[5] = [2, 10]
    counts = Counts([f"s{i}" for i in range(6)], ["control", "variant"], units, conversions, 0)
    result = HierarchicalModel(counts, SMALL).fit()

    small = result["segments"][6]["variants"][1]  # after `all` and s0…s4
    raw_lift = (10 / 40) / (2 / 40) - 1  # +400%
    pooled = result["segments"][0]["variants"][1]["lift"]["mean"]
    assert 0.1 < pooled < 0.35
    assert small["lift"]["mean"] < 1.0 < raw_lift  # shrunk by far most of the way
    assert abs(small["lift"]["mean"] - pooled) < abs(raw_lift - pooled) / 4
    diagnostics = result["diagnostics"]
    assert diagnostics["divergences"] == 0 and diagnostics["max_rhat"] <= 1.05
    assert result["method"] == "hierarchical" and result["sampler"]["seed"] == 3


@pytest.mark.slow
def test_factorial_effects_are_recovered_from_simulated_data():
    rng = np.random.default_rng(6)
    true = {"timing": 0.25, "tone": -0.15, "channel": 0.35}  # log-odds of the non-baseline level
    x = np.array(
        [[f["timing"] == "evening", f["tone"] == "urgent", f["channel"] == "push"] for f in FACTORS]
    )
    units = np.full((3, len(FACTORS)), 4_000)
    base = rng.normal(-2.5, 0.2, size=3)
    conversions = rng.binomial(units, expit(base[:, None] + x @ np.array(list(true.values()))))
    counts = Counts(
        ["a", "b", "c"], ["-".join(level) for level in LEVELS], units, conversions, 0, FACTORS
    )
    result = FactorialModel(counts, SMALL).fit()

    overall = result["segments"][0]
    assert overall["segment"] == "all"
    found = {e["factor"]: e for e in overall["main_effects"]}
    for factor, effect in true.items():
        low, high = found[factor]["log_odds"]["ci"]
        assert low < effect < high, (factor, found[factor])
        assert (found[factor]["prob_better"] > 0.95) == (effect > 0)
    assert found["channel"]["level"] == "push" and found["channel"]["baseline_level"] == "email"
    assert found["channel"]["lift"]["mean"] > 0.25
    assert len(overall["interactions"]) == 3
    assert result["dropped_interactions"] == [] and result["design_note"] is None
    for interaction in overall["interactions"]:
        low, high = interaction["log_odds"]["ci"]
        assert low < 0 < high  # none simulated
    assert result["diagnostics"]["divergences"] == 0


def test_invalid_counts_are_refused():
    with pytest.raises(ValueError):
        Counts(["a"], ["x", "y"], [[10, 10]], [[11, 0]], 0)
    with pytest.raises(ValueError):
        Counts(["a"], ["x"], [[10]], [[1]], 0)
    counts = Counts(["a"], ["x", "y"], [[10, 10]], [[1, 2]], 0, [{"tone": "a"}, {"tone": "b"}])
    with pytest.raises(ValueError):
        FactorialModel(
            Counts(["a"], ["x", "y"], [[10, 10]], [[1, 2]], 0, [{"tone": "a"}, {"channel": "b"}])
        )
    assert FactorialModel(counts).mains == [("tone", "b")]


def test_a_confounded_design_is_not_a_factorial_one():
    confounded = [
        {"timing": "morning", "channel": "push"},
        {"timing": "evening", "channel": "email"},
    ]
    assert "confounded" in factorial_problem(confounded, 0)
    assert factorial_problem(FACTORS, 0) is None
    assert "every factor" in factorial_problem([{"tone": "a"}, {}], 0)
    assert "second level" in factorial_problem([{"tone": "a"}, {"tone": "a"}], 0)


# A 2^(3−1) half fraction (resolution III): the control and the three variants that change
# two of its three factors. Each two-way interaction is aliased with the third main effect.
HALF = [
    f
    for f, level in zip(FACTORS, LEVELS, strict=True)
    if sum(x != y for x, y in zip(level, LEVELS[0], strict=True)) % 2 == 0
]


def design_of(model: FactorialModel) -> np.ndarray:
    """The matrix the model fits in every segment: the baseline, main effects, interactions."""
    rows = len(model.counts.variants)
    return np.column_stack([np.ones(rows), model.x_main, model.x_inter])


def test_a_half_fraction_fits_a_full_rank_design_without_its_aliased_interactions():
    counts = Counts(["a"], [str(i) for i in range(4)], [[1000] * 4], [[50, 60, 55, 70]], 0, HALF)
    model = FactorialModel(counts)
    design = design_of(model)
    assert np.linalg.matrix_rank(design) == design.shape[1] == 4
    assert model.interactions == []
    assert [(a, b) for a, _, b, _ in model.dropped_interactions] == [
        ("timing", "tone"),
        ("timing", "channel"),
        ("tone", "channel"),
    ]
    assert "timing=evening × tone=urgent" in model.design_note
    assert "assume" in model.design_note


def test_a_full_factorial_keeps_every_two_way_interaction():
    counts = Counts(["a"], [str(i) for i in range(8)], [[1000] * 8], [[50] * 8], 0, FACTORS)
    model = FactorialModel(counts)
    design = design_of(model)
    assert np.linalg.matrix_rank(design) == design.shape[1] == 7
    assert len(model.interactions) == 3 and model.dropped_interactions == []
    assert model.design_note is None
