"""PyMC models of a binary metric across segments: hierarchical and factorial.

Both take per-(segment, variant) counts, build a PyMC model, fit it with NUTS and summarise the
posterior as plain numbers (nothing of PyMC leaks out). Effects are non-centred on the logit
scale, the parameterisation that avoids the funnel between a group's spread and its members
when each member is weakly informed, which is exactly when pooling matters; segment baselines,
which all of a segment's units inform, are estimated per segment. `all` is the segments'
rates averaged with their units as weights.

- `HierarchicalModel`: logit p[s, v] = α_s + δ[s, v], δ[s, control] = 0, with a baseline α_s
  per segment and each variant's effect in a segment δ[s, v] = β_v + τ·z[s, v]. A small
  segment's effect is shrunk toward the variant's effect over all segments, as far as the
  segments agree (τ small) and no further.
- `FactorialModel`: for variants built of factors (timing × tone × channel), the effect is a
  sum of main effects of each non-baseline level and two-way interactions, each partially
  pooled across segments the same way. Baseline levels are the control's. An interaction the
  variants cannot tell apart from the other terms (a fractional design aliases it) is left
  out and named in the result, so that every coefficient is identified by the data.

Sampling uses nutpie with its JAX backend: compiling the model takes seconds where the C or
numba backends take 40 s cold, and chains run in threads (no process pool inside a server).
"""

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

INTERVAL = 0.95
# Priors on the logit scale. Baselines: centred near 8% (typical lifecycle conversion rates),
# ±2 sd spans 0.1% to 82%. Effects: ±1 logit (an odds ratio of e) is already a huge message
# effect.
BASELINE_MEAN, BASELINE_SD = -2.5, 2.0
EFFECT_SD, INTERACTION_SD = 1.0, 0.5
# Spreads of effects between segments: Gamma(2, 10), mean 0.2, mode 0.1 logit. A half-normal
# put mass at exactly no spread, and with well-measured segments the sampler diverged in the
# funnel there; a boundary-avoiding prior (Gelman et al., BDA3 §5.7) still lets a tiny
# segment (standard error ~0.8) be shrunk nearly all the way to the pool.
SPREAD_SHAPE, SPREAD_RATE = 2.0, 10.0


@dataclass(frozen=True)
class SamplerSettings:
    # Four chains (split R-hat compares eight halves: stable to ±0.005 where two chains
    # were not) of 600 draws after 500 tuning steps; nutpie's adaptation settles fast.
    draws: int = 600
    tune: int = 500
    chains: int = 4
    seed: int = 0
    target_accept: float = 0.9


@dataclass
class Diagnostics:
    max_rhat: float
    min_ess: float
    divergences: int
    seconds: float
    draws: int
    chains: int

    @property
    def converged(self) -> bool:
        return self.max_rhat <= 1.01 and self.divergences == 0

    def as_dict(self) -> dict:
        return {
            "max_rhat": self.max_rhat,
            "min_ess": self.min_ess,
            "divergences": self.divergences,
            "seconds": round(self.seconds, 2),
            "draws": self.draws,
            "chains": self.chains,
            "converged": self.converged,
        }


@dataclass
class Counts:
    """Units and conversions per (segment, variant); the control is a variant index."""

    segments: list[str]
    variants: list[str]
    units: np.ndarray
    conversions: np.ndarray
    control: int
    factors: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self):
        self.units = np.asarray(self.units, dtype=float)
        self.conversions = np.asarray(self.conversions, dtype=float)
        shape = (len(self.segments), len(self.variants))
        if self.units.shape != shape or self.conversions.shape != shape:
            raise ValueError(f"units and conversions must have shape {shape}.")
        if np.any(self.conversions < 0) or np.any(self.conversions > self.units):
            raise ValueError("Need 0 ≤ conversions ≤ units in every cell.")
        if len(self.variants) < 2 or not 0 <= self.control < len(self.variants):
            raise ValueError("Need two variants or more and a control among them.")


Progress = Callable[[float, str], None]


def _no_progress(share: float, message: str) -> None:
    pass


class _Model:
    """Build, fit, summarise. Subclasses define the linear predictor and the summary."""

    method = ""

    def __init__(self, counts: Counts, settings: SamplerSettings = SamplerSettings()):
        self.counts = counts
        self.settings = settings
        self.model = None

    def build(self):
        import pymc as pm

        c = self.counts
        with pm.Model(coords={"segment": c.segments, "variant": c.variants}) as model:
            # Each segment's baseline (the control's logit) on its own: all of a segment's
            # units inform it, so pooling it gains little, and a pooled baseline's spread,
            # poorly identified with few segments, was where the sampler diverged.
            baseline = pm.Normal("baseline", BASELINE_MEAN, BASELINE_SD, dims="segment")
            effect = self._effects(pm)
            logit_p = pm.Deterministic(
                "logit_p", baseline[:, None] + effect, dims=("segment", "variant")
            )
            pm.Binomial("conversions", n=c.units, logit_p=logit_p, observed=c.conversions)
        self.model = model
        return model

    def fit(self, progress: Progress = _no_progress) -> dict:
        """Sample; return the summary with diagnostics. Raises on sampler failure."""
        import nutpie

        started = time.perf_counter()
        if self.model is None:
            progress(0.05, "building the model")
            self.build()
        progress(0.1, "compiling the model")
        compiled = nutpie.compile_pymc_model(self.model, backend="jax", gradient_backend="jax")
        s = self.settings
        total = s.chains * (s.draws + s.tune)
        progress(0.15, "sampling")
        sampler = nutpie.sample(
            compiled,
            draws=s.draws,
            tune=s.tune,
            chains=s.chains,
            cores=min(s.chains, 2),
            seed=s.seed,
            target_accept=s.target_accept,
            progress_bar=False,
            blocking=False,
        )
        while not _finished(sampler):
            time.sleep(1.0)
            done = _draws_done(sampler)
            progress(0.15 + 0.75 * min(done / total, 1.0), "sampling")
        trace = sampler.wait()
        progress(0.92, "summarising")
        diagnostics = _diagnostics(trace, time.perf_counter() - started, s)
        summary = self._summary(trace)
        summary["diagnostics"] = diagnostics.as_dict()
        summary["method"] = self.method
        summary["sampler"] = {
            "name": "nutpie (NUTS), JAX backend",
            "draws": s.draws,
            "tune": s.tune,
            "chains": s.chains,
            "seed": s.seed,
        }
        progress(1.0, "done")
        return summary

    def _effects(self, pm):
        raise NotImplementedError

    def _summary(self, trace) -> dict:
        raise NotImplementedError

    def _rates(self, trace) -> np.ndarray:
        """Posterior draws of p, shape (draws, segments, variants)."""
        logit = trace.posterior["logit_p"].values
        logit = logit.reshape(-1, *logit.shape[2:])
        return 1.0 / (1.0 + np.exp(-logit))


class HierarchicalModel(_Model):
    method = "hierarchical"

    def _effects(self, pm):
        c = self.counts
        others = [i for i in range(len(c.variants)) if i != c.control]
        beta = pm.Normal("effect", 0.0, EFFECT_SD, shape=len(others))
        tau = pm.Gamma("effect_spread", SPREAD_SHAPE, SPREAD_RATE)
        per_segment = _partially_pooled(
            pm, "effect_segment", beta, tau, (len(c.segments), len(others))
        )
        columns = []
        k = 0
        for i in range(len(c.variants)):
            if i == c.control:
                columns.append(pm.math.zeros((len(c.segments), 1)))
            else:
                columns.append(per_segment[:, k : k + 1])
                k += 1
        return pm.math.concatenate(columns, axis=1)

    def _summary(self, trace) -> dict:
        c = self.counts
        rates = self._rates(trace)
        # `all`: each variant's rate over all segments, weighted by the segments' units.
        weights = c.units.sum(axis=1) / max(c.units.sum(), 1.0)
        overall = (rates * weights[None, :, None]).sum(axis=1)
        segments = [_variant_rows("all", overall, c, units=c.units.sum(0))]
        for s, name in enumerate(c.segments):
            segments.append(_variant_rows(name, rates[:, s, :], c, units=c.units[s]))
        posterior = trace.posterior
        effect = posterior["effect"].values.reshape(rates.shape[0], -1)
        others = [v for i, v in enumerate(c.variants) if i != c.control]
        return {
            "segments": segments,
            "effects": [
                {"variant": v, "log_odds": _interval(effect[:, j])} for j, v in enumerate(others)
            ],
            "effect_spread": _interval(posterior["effect_spread"].values.reshape(-1)),
        }


def factorial_problem(factors: list[dict[str, str]], control: int) -> str | None:
    """Why these variants cannot be analysed as a factorial design, or None if they can."""
    names = list(factors[control]) if factors else []
    if not names or any(set(f) != set(names) for f in factors):
        return "Every variant must set every factor (and there must be factors)."
    mains = [
        (n, lv) for n in names for lv in sorted({f[n] for f in factors} - {factors[control][n]})
    ]
    if not mains:
        return "No factor has a second level to compare with the control's."
    design = np.array([[1.0] + [float(f[n] == lv) for n, lv in mains] for f in factors])
    if np.linalg.matrix_rank(design) < design.shape[1]:
        return (
            "Factor levels are confounded: some always change together across the variants, "
            "so their effects cannot be told apart."
        )
    return None


class FactorialModel(_Model):
    method = "factorial"

    def __init__(self, counts: Counts, settings: SamplerSettings = SamplerSettings()):
        super().__init__(counts, settings)
        if len(counts.factors) != len(counts.variants):
            raise ValueError("Every variant needs its factor levels for a factorial model.")
        problem = factorial_problem(counts.factors, counts.control)
        if problem:
            raise ValueError(problem)
        baseline = counts.factors[counts.control]
        names = list(baseline)
        levels = {n: sorted({f[n] for f in counts.factors} - {baseline[n]}) for n in names}
        self.baseline = baseline
        self.mains = [(n, lv) for n in names for lv in levels[n]]
        self.x_main = np.array(
            [[float(f[n] == lv) for n, lv in self.mains] for f in counts.factors]
        )
        present = [
            (a, la, b, lb)
            for (a, la), (b, lb) in itertools.combinations(self.mains, 2)
            if a != b and any(f[a] == la and f[b] == lb for f in counts.factors)
        ]
        self.interactions, self.dropped_interactions = _identified(
            np.column_stack([np.ones(len(counts.factors)), self.x_main]),
            present,
            [_indicator(counts.factors, term) for term in present],
        )
        self.x_inter = np.array(
            [_indicator(counts.factors, term) for term in self.interactions]
        ).T.reshape(len(counts.factors), len(self.interactions))

    @property
    def design_note(self) -> str | None:
        """Why interactions are missing from the model, or None when none is."""
        if not self.dropped_interactions:
            return None
        named = ", ".join(f"{a}={la} × {b}={lb}" for a, la, b, lb in self.dropped_interactions)
        return (
            f"Left out of the model: the interactions {named}. These "
            f"{len(self.counts.variants)} variants cannot tell them apart from the effects "
            "the model keeps (the design aliases them), so those effects assume they are zero."
        )

    def _effects(self, pm):
        c = self.counts
        segments = len(c.segments)
        main = pm.Normal("main", 0.0, EFFECT_SD, shape=len(self.mains))
        main_spread = pm.Gamma("main_spread", SPREAD_SHAPE, SPREAD_RATE)
        main_s = _partially_pooled(
            pm, "main_segment", main, main_spread, (segments, len(self.mains))
        )
        effect = pm.math.dot(main_s, self.x_main.T)
        if self.interactions:
            inter = pm.Normal("interaction", 0.0, INTERACTION_SD, shape=len(self.interactions))
            inter_spread = pm.Gamma("interaction_spread", SPREAD_SHAPE, 2 * SPREAD_RATE)
            inter_s = _partially_pooled(
                pm,
                "interaction_segment",
                inter,
                inter_spread,
                (segments, len(self.interactions)),
            )
            effect = effect + pm.math.dot(inter_s, self.x_inter.T)
        return effect

    def _summary(self, trace) -> dict:
        c = self.counts
        rates = self._rates(trace)
        posterior = trace.posterior
        draws = rates.shape[0]
        main_s = posterior["main_segment"].values.reshape(draws, len(c.segments), -1)
        main = posterior["main"].values.reshape(draws, -1)
        inter = inter_s = None
        if self.interactions:
            inter_s = posterior["interaction_segment"].values.reshape(draws, len(c.segments), -1)
            inter = posterior["interaction"].values.reshape(draws, -1)
        weights = c.units.sum(axis=1) / max(c.units.sum(), 1.0)
        pooled_rates = (rates * weights[None, :, None]).sum(axis=1)
        blocks = [self._block("all", pooled_rates, main, inter, c.units.sum())]
        for s, name in enumerate(c.segments):
            blocks.append(
                self._block(
                    name,
                    rates[:, s, :],
                    main_s[:, s, :],
                    None if inter_s is None else inter_s[:, s, :],
                    c.units[s].sum(),
                )
            )
        return {
            "segments": blocks,
            "baseline": dict(self.baseline),
            "dropped_interactions": [
                {"factors": [a, b], "levels": [la, lb]}
                for a, la, b, lb in self.dropped_interactions
            ],
            "design_note": self.design_note,
        }

    def _block(self, segment, rates, main, inter, units) -> dict:
        """Main effects as the average lift on the rate scale of switching one factor from its
        baseline level, over the variants that differ only in that factor; and log-odds."""
        c = self.counts
        effects = []
        for j, (name, level) in enumerate(self.mains):
            pairs = []
            for v, f in enumerate(c.factors):
                if f[name] == level:
                    twin = {**f, name: self.baseline[name]}
                    if twin in c.factors:
                        pairs.append((v, c.factors.index(twin)))
            with_level = rates[:, [a for a, _ in pairs]].mean(axis=1) if pairs else None
            without = rates[:, [b for _, b in pairs]].mean(axis=1) if pairs else None
            lift = with_level / without - 1 if pairs else None
            effects.append(
                {
                    "factor": name,
                    "level": level,
                    "baseline_level": self.baseline[name],
                    "log_odds": _interval(main[:, j]),
                    "lift": None if lift is None else _interval(lift),
                    "prob_better": None if lift is None else float(np.mean(lift > 0)),
                }
            )
        interactions = []
        for j, (a, la, b, lb) in enumerate(self.interactions):
            interactions.append(
                {
                    "factors": [a, b],
                    "levels": [la, lb],
                    "log_odds": _interval(inter[:, j]),
                    "prob_positive": float(np.mean(inter[:, j] > 0)),
                }
            )
        return {
            "segment": segment,
            "units": int(units),
            "main_effects": effects,
            "interactions": interactions,
        }


def _indicator(factors: list[dict[str, str]], term: tuple[str, str, str, str]) -> np.ndarray:
    """1.0 for the variants with both levels of a two-way interaction, else 0.0."""
    a, la, b, lb = term
    return np.array([float(f[a] == la and f[b] == lb) for f in factors])


def _identified(design: np.ndarray, terms: list, columns: list[np.ndarray]) -> tuple[list, list]:
    """(kept, dropped): the terms whose columns, taken in order, each raise the rank of
    `design` (the baseline and main effects), and the others.

    The model puts a coefficient per term and segment on as many rates as there are variants;
    a column inside the span of those before it is aliased with them, and its coefficient and
    theirs would be told apart by their priors alone. A 2^(3−1) half fraction fitted 7
    coefficients per segment to 4 variants: main effects came out ±0.75 log-odds wide,
    prior-driven, with R-hat 1.014 (3,000 units a cell); without the aliased interactions
    they are ±0.1 wide and cover the truth, R-hat 1.005. They are then identified under the
    stated assumption that those interactions are zero."""
    kept, dropped = [], []
    for term, column in zip(terms, columns, strict=True):
        widened = np.column_stack([design, column])
        if np.linalg.matrix_rank(widened) > np.linalg.matrix_rank(design):
            design = widened
            kept.append(term)
        else:
            dropped.append(term)
    return kept, dropped


def _partially_pooled(pm, name, mean, spread, shape):
    """Per-segment values ~ N(mean, spread), non-centred: mean + spread · z, z ~ N(0, 1)."""
    z = pm.Normal(f"{name}_z", 0.0, 1.0, shape=shape)
    return pm.Deterministic(name, mean[None, :] + spread * z)


def _variant_rows(segment: str, rates: np.ndarray, counts: Counts, units) -> dict:
    """Per variant: rate, lift vs control, P(beat control), P(best), from draws (draws, V)."""
    control = rates[:, counts.control]
    best = np.bincount(np.argmax(rates, axis=1), minlength=rates.shape[1]) / rates.shape[0]
    rows = []
    for v, name in enumerate(counts.variants):
        lift = rates[:, v] / control - 1
        rows.append(
            {
                "variant": name,
                "units": int(units[v]),
                "rate": _interval(rates[:, v]),
                "lift": None if v == counts.control else _interval(lift),
                "prob_beat_control": None if v == counts.control else float(np.mean(lift > 0)),
                "prob_best": float(best[v]),
            }
        )
    return {"segment": segment, "variants": rows}


def _interval(draws: np.ndarray) -> dict:
    """Mean, median (what to quote for a lift, whose mean the ratio's right tail pulls up) and
    equal-tailed interval of posterior draws."""
    tail = (1 - INTERVAL) / 2
    low, median, high = np.quantile(draws, [tail, 0.5, 1 - tail])
    return {"mean": float(np.mean(draws)), "median": float(median), "ci": [float(low), float(high)]}


def _finished(sampler) -> bool:
    try:
        return bool(sampler.is_finished)
    except TimeoutError:  # nutpie 0.16 raises this for "still running"
        return False


def _draws_done(sampler) -> int:
    """How many draws (tuning included) the chains have made so far. A trace inspected while
    sampling pads every chain to the longest with NaN; the finite values are the draws."""
    try:
        trace = sampler.inspect()
        done = 0
        for group in ("warmup_posterior", "posterior"):
            if hasattr(trace, group):
                data = getattr(trace, group)
                values = data[next(iter(data.data_vars))].values
                first = values.reshape(values.shape[0], values.shape[1], -1)[..., 0]
                done += int(np.isfinite(first).sum())
        return done
    except Exception:  # a trace that is not ready yet
        return 0


def _diagnostics(trace, seconds: float, settings: SamplerSettings) -> Diagnostics:
    """Max rank-normalised split R-hat and min bulk ESS over every sampled parameter
    (deterministics excluded), unrounded; divergences after tuning."""
    import arviz as az

    names = [n for n in trace.posterior.data_vars if n != "logit_p" and not n.endswith("_segment")]
    rhat = az.rhat(trace, var_names=names)
    ess = az.ess(trace, var_names=names, method="bulk")
    max_rhat = max(float(rhat[n].max()) for n in names)
    min_ess = min(float(ess[n].min()) for n in names)
    return Diagnostics(
        max_rhat=round(max_rhat, 4) if math.isfinite(max_rhat) else float("nan"),
        min_ess=round(min_ess, 1),
        divergences=int(trace.sample_stats["diverging"].values.sum()),
        seconds=seconds,
        draws=settings.draws,
        chains=settings.chains,
    )
