"""Bandit data analysed per allocation period, and the sample-ratio-mismatch check.

Under a bandit, weights change between periods while the base rate may drift: an arm given
most units in a good week looks better than one given most units in a bad week, though both
converted alike within each week (Simpson's paradox). So each arm's rate is estimated within
each period and combined with the periods' shares of all units, the same shares for every arm:
θ_k = Σ_p (N_p / N) · θ_pk. Its posterior, a weighted sum of independent Betas, is computed
exactly on a lattice (`stratified_posteriors`: each Beta's mass per step, the steps
convolved); `stratified_draws` samples the same posterior, for the factor contrasts that need
joint draws across arms and for the tests. A bandit starves some arms in some periods; their
rate there starts from the period's rate over all arms (PRIOR_UNITS, shared out among the
periods), not from a flat prior.

The sample-ratio check compares the units each arm received with what the weights should
have given it, cell by cell: a period × segment cell's units against that cell's weights
(after the holdout's share).
"""

from dataclasses import dataclass

import numpy as np
from scipy import signal, special, stats

from analysis.conjugate import checked_counts

SRM_ALPHA = 0.001


# An arm's rate within a period starts from that period's rate over all arms: under a bandit
# some arms get almost no units in some periods, and a flat Beta(1, 1) there would pull their
# period-weighted rate toward 50%. Where an arm has no units in a period, it is assumed to
# convert like the period's other arms: no effect, the conservative guess.
# The prior is worth PRIOR_UNITS per arm over all periods together, each period getting its
# share of all units: a prior of 10 units in every period grew with the number of periods and
# shrank lifts toward 0 (a true +20% read +10.6% over a week of 15-minute periods, 27 units a
# cell). Shared out this way, for a split that never changed it is exactly the pooled
# posterior with a prior of PRIOR_UNITS units at the overall rate.
PRIOR_UNITS = 10.0


# The exact posterior of an arm's period-weighted rate, Σ_p s_p θ_p (independent Betas), on an
# evenly spaced lattice: each Beta's mass per lattice step from its CDF, the steps convolved.
# The step is the sum's sd / STEPS_PER_SD; each step's mass is split between its two ends so
# that its mean stays where it is (`_split`), so every term's mean is exact and the lattice's
# error is of second order in the step.
STEPS_PER_SD = 32
# Tail mass each term's span leaves out, and what is trimmed off the running sum's ends.
TERM_TAIL, TRIM = 1e-12, 1e-15
# Where PILE_TERMS or more terms each hold less than PILE_SHARE of the sum's variance, they
# are added as one "pile": a translated Gamma with the pile's exact mean, variance and
# skewness (a sum of many small terms is near Normal, and its skewness is what remains). It
# keeps the cost bounded over thousands of periods; the terms that could shape the sum (a
# starved arm's wide prior in a big period) are convolved exactly, and so are a few small
# ones (two spiked terms are no Gamma: they moved a 2.5% quantile by two steps).
PILE_SHARE, PILE_TERMS, PILE_MIN_SHAPE = 0.02, 32, 2.0
# The most lattice points an arm's terms may span together (see `stratified_posteriors`).
MAX_POINTS = 2**17
# A rate below this is zero for a ratio (a lift over it is not reported).
NEAR_ZERO = 1e-12


@dataclass(frozen=True)
class Lattice:
    """A rate's distribution on origin + step·j (j = 0 … n−1), with mass[j] there; `mean` and
    `sd` are the exact distribution's, `near_zero` its exact P(rate < NEAR_ZERO). Its CDF rises
    linearly across each step (a point's mass spread over [x_j − step/2, x_j + step/2]), within
    [0, 1]: a point at 0 holds what lies in its first half step, none of it below 0."""

    origin: float
    step: float
    mass: np.ndarray
    mean: float
    sd: float
    near_zero: float = 0.0

    @property
    def points(self) -> np.ndarray:
        return self.origin + self.step * np.arange(self.mass.size)

    @property
    def edges(self) -> np.ndarray:
        edges = self.origin + self.step * (np.arange(self.mass.size + 1) - 0.5)
        return np.clip(edges, 0.0, 1.0)

    @property
    def cumulative(self) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(self.mass)])

    def cdf(self, x) -> np.ndarray:
        return np.interp(x, self.edges, self.cumulative, left=0.0, right=1.0)

    def quantile(self, q) -> np.ndarray:
        """The q-quantiles (linear within a step)."""
        cumulative, edges = self.cumulative, self.edges
        q = np.asarray(q, dtype=float)
        j = np.clip(np.searchsorted(cumulative, q, side="left"), 1, self.mass.size)
        below = cumulative[j - 1]
        inside = np.where(
            self.mass[j - 1] > 0, (q - below) / np.maximum(self.mass[j - 1], 1e-300), 0.5
        )
        return edges[j - 1] + (edges[j] - edges[j - 1]) * np.clip(inside, 0.0, 1.0)


def positive_points(lattice: Lattice) -> np.ndarray:
    """The lattice's points for a ratio or a log: a point at 0 stands for its half step above
    0, at a quarter step (the rate is positive; NEAR_ZERO says when it may be zero)."""
    points = lattice.points
    return np.where(points > 0, points, lattice.step / 4)


def stratified_posteriors(units, conversions, prior_units: float = PRIOR_UNITS) -> list[Lattice]:
    """Each arm's posterior of its period-weighted conversion rate, exactly (to the lattice's
    step): the distribution `stratified_draws` samples from, without sampling.

    units, conversions: shape (periods, arms), as for `stratified_draws`.
    """
    shares, alpha, beta = _period_posteriors(units, conversions, prior_units)
    shares = np.broadcast_to(shares[:, None], alpha.shape)
    total = alpha + beta
    means = shares * alpha / total
    variances = shares**2 * alpha * beta / (total**2 * (total + 1))
    variance = variances.sum(axis=0)
    sd = np.sqrt(variance)
    step = sd / STEPS_PER_SD
    # Only terms of one mode away from the ends go to the pile: a term with α or β under
    # PILE_MIN_SHAPE is near two points (a starved arm at a low rate: mostly 0, now and then
    # its share), which no Gamma resembles however many there are.
    small = (variances < PILE_SHARE * variance) & (np.minimum(alpha, beta) >= PILE_MIN_SHAPE)
    small &= small.sum(axis=0) >= PILE_TERMS
    skews = 2 * (beta - alpha) * np.sqrt(total + 1) / ((total + 2) * np.sqrt(alpha * beta))
    # Each term spans its TERM_TAIL quantiles; where their spans together would take more than
    # MAX_POINTS steps (terms near a point mass with a long tail: no conversion in 10^6 units),
    # the step grows to keep the cost bounded, at that arm's resolution.
    low = shares * special.betaincinv(alpha, beta, TERM_TAIL)
    high = shares * special.betaincinv(alpha, beta, 1 - TERM_TAIL)
    span = np.where(small, 0.0, high - low).sum(axis=0)
    step = np.maximum(step, span / MAX_POINTS)
    _, arms = np.nonzero(~small)
    exact = _terms(
        alpha[~small], beta[~small], shares[~small], step[arms], low[~small], high[~small]
    )
    # P(rate < NEAR_ZERO) exactly: every term must be below it.
    near_zero = np.exp(
        np.log(
            np.maximum(special.betainc(alpha, beta, np.minimum(NEAR_ZERO / shares, 1.0)), 1e-300)
        ).sum(axis=0)
    )
    lattices = []
    for k in range(alpha.shape[1]):
        terms = [term for term, arm in zip(exact, arms, strict=True) if arm == k]
        if small[:, k].any():
            piled = small[:, k]
            third = float((skews[piled, k] * variances[piled, k] ** 1.5).sum())
            pile = _pile(means[piled, k].sum(), variances[piled, k].sum(), third, step[k])
            terms.append(pile)
        origin, mass = _convolved(terms, step[k])
        lattices.append(
            Lattice(
                origin, step[k], mass / mass.sum(), means[:, k].sum(), sd[k], float(near_zero[k])
            )
        )
    return lattices


def _period_posteriors(units, conversions, prior_units: float):
    """The shares of the periods with units, and each arm's Beta parameters in each."""
    units, conversions = checked_counts(units, conversions, shape="(periods, arms)", each="period")
    totals = units.sum(axis=1)
    if totals.sum() <= 0:
        raise ValueError("No units at all.")
    live = totals > 0
    units, conversions, totals = units[live], conversions[live], totals[live]
    shares = totals / totals.sum()
    rates = (conversions.sum(axis=1) + 1) / (totals + 2)
    alpha = (shares * prior_units * rates)[:, None] + conversions
    beta = (shares * prior_units * (1 - rates))[:, None] + units - conversions
    return shares, alpha, beta


def _convolved(terms, step) -> tuple[float, np.ndarray]:
    """The sum of independent lattice distributions: convolved two by two, so that lengths
    stay balanced (thousands of short terms cost what their total length does), the ends
    trimmed after each round."""
    while len(terms) > 1:
        paired = [
            _trimmed(a_origin + b_origin, _convolve(a, b), step)
            for (a_origin, a), (b_origin, b) in zip(terms[::2], terms[1::2], strict=False)
        ]
        terms = paired + ([terms[-1]] if len(terms) % 2 else [])
    return terms[0]


def _convolve(a, b) -> np.ndarray:
    """Direct where short (numpy's loop beats an FFT's overhead), by FFT where long."""
    if a.size * b.size < 100_000:
        return np.convolve(a, b)
    return signal.fftconvolve(a, b)


def _terms(alpha, beta, share, step, low, high) -> list[tuple[float, np.ndarray]]:
    """share[i] · Beta(alpha[i], beta[i]) on the lattice step[i]·Z, each: (origin, mass), from
    its span [low[i], high[i]]. The special functions are called once for all terms."""
    if alpha.size == 0:
        return []
    first = np.floor(low / step).astype(int)
    counts = np.maximum(np.ceil(high / step).astype(int), first + 1) - first + 1
    ends = np.cumsum(counts)
    term = np.repeat(np.arange(alpha.size), counts)
    points = step[term] * (first[term] + np.arange(ends[-1]) - (ends - counts)[term])
    at = np.clip(points / share[term], 0.0, 1.0)
    a, b = alpha[term], beta[term]
    # Each step's mass and its mean: E[θ; θ ≤ x] = α/(α+β) · I_x(α+1, β).
    cdf = special.betainc(a, b, at)
    moment = share[term] * a / (a + b) * special.betainc(a + 1, b, at)
    return _split(points, cdf, moment, counts, step[term])


def _pile(mean, variance, third, step) -> tuple[float, np.ndarray]:
    """A translated Gamma with this mean, variance and third cumulant (a Normal where the
    skewness vanishes) on the lattice step·Z: (origin, mass)."""
    sd = np.sqrt(variance)
    skew = third / sd**3
    low, high = mean - 14 * sd, mean + 14 * sd
    if abs(skew) < 1e-6:
        points = _points(low, high, step)
        z = (points - mean) / sd
        cdf = special.ndtr(z)
        # E[X; X ≤ x] = μ Φ(z) − σ φ(z)
        first = mean * cdf - sd * np.exp(-(z**2) / 2) / np.sqrt(2 * np.pi)
        return _one(points, cdf, first, step)
    # X = start + sign · G, G ~ Gamma(shape, scale): E[G; G ≤ g] = shape·scale·F_{shape+1}(g).
    shape, scale, sign = 4 / skew**2, sd * abs(skew) / 2, float(np.sign(skew))
    start = mean - sign * shape * scale
    low, high = (max(low, start), high) if sign > 0 else (low, min(high, start))
    points = _points(low, high, step)
    g = np.maximum(sign * (points - start), 0.0)
    below = stats.gamma.cdf(g, shape, scale=scale)
    below_first = shape * scale * stats.gamma.cdf(g, shape + 1, scale=scale)
    if sign > 0:
        return _one(points, below, start * below + below_first, step)
    # X ≤ x ⇔ G ≥ g: the upper tails, read from the top.
    cdf = 1 - below
    first = start * cdf - (shape * scale - below_first)
    return _one(points, cdf, first, step)


def _one(points, cdf, moment, step) -> tuple[float, np.ndarray]:
    """`_split` of one distribution, trimmed."""
    (origin, mass) = _split(points, cdf, moment, [points.size], np.full(points.size, step))[0]
    return _trimmed(origin, mass, step)


def _points(low, high, step) -> np.ndarray:
    """The lattice points step·k that enclose [low, high] (two at least)."""
    first, last = int(np.floor(low / step)), int(np.ceil(high / step))
    return step * np.arange(first, max(last, first + 1) + 1)


def _split(points, cdf, moment, counts, step) -> list[tuple[float, np.ndarray]]:
    """Distributions on the lattice from their CDF and partial first moment E[X; X ≤ x] at
    `points` (one after the other, `counts` points each, `step` at every point): the mass
    between two points is split between them so that its mean stays where it is (each step's
    mass and mean kept; each distribution's mean exact). Each: (origin, mass)."""
    cdf, moment = np.array(cdf, dtype=float), np.array(moment, dtype=float)
    ends = np.cumsum(counts)
    starts, last = ends - counts, ends - 1
    # Each distribution's ends hold all its mass and moment (what lies beyond: at the ends).
    cdf[starts], moment[starts] = 0.0, 0.0
    moment[last] += (1 - cdf[last]) * points[last]
    cdf[last] = 1.0
    term = np.repeat(np.arange(len(counts)), counts)
    same = term[:-1] == term[1:]  # the steps within a distribution, not between two
    mass = np.where(same, np.maximum(np.diff(cdf), 0.0), 0.0)
    width = step[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = np.where(mass > 0, np.diff(moment) / mass, points[:-1] + width / 2)
    upper = np.clip((inside - points[:-1]) / width, 0.0, 1.0) * mass
    lattice = np.zeros(points.size)
    lattice[:-1] += mass - upper
    lattice[1:] += upper
    totals = np.add.reduceat(lattice, starts)
    return [
        (float(points[start]), lattice[start:end] / total)
        for start, end, total in zip(starts, ends, totals, strict=True)
    ]


def _trimmed(origin, mass, step) -> tuple[float, np.ndarray]:
    """Without the ends that hold less than TRIM (and without rounding's negative mass)."""
    mass = np.maximum(mass, 0.0)
    cumulative = np.cumsum(mass)
    first = int(np.searchsorted(cumulative, TRIM * cumulative[-1]))
    last = int(np.searchsorted(cumulative, (1 - TRIM) * cumulative[-1])) + 1
    return origin + first * step, mass[first:last]


def stratified_draws(
    units,
    conversions,
    rng: np.random.Generator,
    draws: int = 100_000,
    prior_units: float = PRIOR_UNITS,
) -> np.ndarray:
    """Posterior draws (draws × arms) of each arm's period-weighted conversion rate.

    units, conversions: shape (periods, arms). Periods with no units carry no weight. Within
    period p, arm k's rate has the posterior Beta(m_p·r_p + c_pk, m_p·(1 − r_p) + n_pk − c_pk),
    r_p being the period's rate over all arms ((C_p + 1) / (N_p + 2)) and m_p the period's
    share of `prior_units`, N_p / N · prior_units.
    """
    units, conversions = checked_counts(units, conversions, shape="(periods, arms)", each="period")
    totals = units.sum(axis=1)
    if totals.sum() <= 0:
        raise ValueError("No units at all.")
    shares = totals / totals.sum()
    rates = (conversions.sum(axis=1) + 1) / (totals + 2)
    result = np.zeros((draws, units.shape[1]))
    for share, rate, n, c in zip(shares, rates, units, conversions, strict=True):
        if share > 0:
            alpha = share * prior_units * rate + c
            beta = share * prior_units * (1 - rate) + n - c
            result += share * rng.beta(alpha, beta, size=(draws, n.size))
    return result


def stratified_normal(units, totals, squares, prior_units: float = PRIOR_UNITS):
    """Mean and variance of each arm's period-weighted mean value per unit (the same strata and
    the same prior as `stratified_draws`: a period's mean over all arms, worth its share of
    `prior_units`)."""
    units, totals, squares = (np.asarray(a, dtype=float) for a in (units, totals, squares))
    cell_units = units.sum(axis=1)
    shares = cell_units / cell_units.sum()
    with np.errstate(divide="ignore", invalid="ignore"):  # np.where evaluates both branches
        cell_mean = np.where(cell_units > 0, totals.sum(axis=1) / cell_units, 0.0)
        cell_var = np.where(
            cell_units > 1,
            (squares.sum(axis=1) - cell_units * cell_mean**2) / (cell_units - 1),
            0.0,
        )
    cell_var = np.maximum(cell_var, 0.0)
    prior = shares[:, None] * prior_units
    weight = units + prior  # 0 only in a period without units, which carries no weight
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(weight > 0, (totals + prior * cell_mean[:, None]) / weight, 0.0)
        own = np.where(  # an arm's own spread; the period's where it has one unit or none
            units > 1,
            (squares - units * (totals / np.maximum(units, 1)) ** 2) / np.maximum(units - 1, 1),
            cell_var[:, None],
        )
        var = np.where(weight > 0, np.maximum(own, 0.0) / weight, 0.0)
    return (shares[:, None] * mean).sum(axis=0), (shares[:, None] ** 2 * var).sum(axis=0)


@dataclass(frozen=True)
class SampleRatio:
    statistic: float
    p_value: float
    flag: bool
    expected: np.ndarray


def sample_ratio(observed, expected_shares, alpha: float = SRM_ALPHA) -> SampleRatio:
    """Chi-square test of observed unit counts against expected shares (summing to 1).

    An arm with a zero share (a variant a guardrail switched off) drops out of the test while
    it has no units; any unit it does have is a mismatch outright (p = 0).
    """
    observed = np.asarray(observed, dtype=float)
    shares = np.asarray(expected_shares, dtype=float)
    if observed.shape != shares.shape or observed.ndim != 1 or observed.size < 2:
        raise ValueError("Need matching 1-D arrays of at least two arms.")
    if np.any(shares < 0) or not np.isclose(shares.sum(), 1.0):
        raise ValueError("Expected shares must be non-negative and sum to 1.")
    expected = shares * observed.sum()
    live = shares > 0
    if np.any(observed[~live] > 0):
        return SampleRatio(float("inf"), 0.0, True, expected)
    if live.sum() < 2 or observed.sum() == 0:
        return SampleRatio(0.0, 1.0, False, expected)
    statistic, p_value = stats.chisquare(observed[live], expected[live])
    return SampleRatio(float(statistic), float(p_value), bool(p_value < alpha), expected)


def sample_ratio_by_cell(
    observed, expected_shares, alpha: float = SRM_ALPHA, min_expected: float = 5.0
) -> SampleRatio:
    """The same test cell by cell (period × segment): Σ over cells of each cell's chi-square
    statistic, with Σ (arms − 1) degrees of freedom, one test at level `alpha` whatever the
    number of cells. A mismatch in one cell is not hidden by the others (a split off in week 1
    and right in week 2, or off in one segment, can look right in total).

    Why cells, not period totals: under a bandit each segment has its own weights, and a
    period's total per arm, a sum of multinomials with different shares, varies less than one
    multinomial with the pooled shares. Tested on totals, 3 segments with bandit weights of
    their own gave P(p < 0.001) 0.0001 and P(p < 0.05) 0.015 under the null, and power 0.79
    for a mismatch in one cell; per cell 0.0012, 0.051 and 0.99 (20,000 simulations).

    observed, expected_shares: (cells, arms); each cell's shares sum to 1. Cells too small for
    the chi-square approximation (an expected count under `min_expected`) are tested together
    as one more stratum (conservative, as totals are, where their weights differ). `expected`
    in the answer is the expected units per arm over all cells.
    """
    observed = np.atleast_2d(np.asarray(observed, dtype=float))
    shares = np.atleast_2d(np.asarray(expected_shares, dtype=float))
    if observed.shape != shares.shape or observed.shape[1] < 2:
        raise ValueError("Need observed counts and shares of the same shape, two arms or more.")
    if np.any(shares < 0) or not np.allclose(shares.sum(axis=1), 1.0):
        raise ValueError("Each cell's expected shares must be non-negative and sum to 1.")
    expected = shares * observed.sum(axis=1, keepdims=True)
    total = expected.sum(axis=0)
    if np.any(observed[shares == 0] > 0):
        return SampleRatio(float("inf"), 0.0, True, total)
    live = shares > 0
    used = observed.sum(axis=1) > 0
    smallest = np.where(live, expected, np.inf).min(axis=1)
    big = used & (smallest >= min_expected)
    o, e, m = observed[big], expected[big], live[big]
    rest = used & ~big
    if rest.any():
        o = np.vstack([o, observed[rest].sum(axis=0)])
        e = np.vstack([e, expected[rest].sum(axis=0)])
        m = np.vstack([m, live[rest].any(axis=0)])
    tested = m.sum(axis=1) >= 2
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(m, (o - e) ** 2 / e, 0.0)
    statistic = float(terms[tested].sum())
    df = int((m[tested].sum(axis=1) - 1).sum())
    if df == 0:
        return SampleRatio(0.0, 1.0, False, total)
    p_value = float(stats.chi2.sf(statistic, df))
    return SampleRatio(statistic, p_value, bool(p_value < alpha), total)


def cell_shares(weights, holdout: float = 0.0) -> np.ndarray:
    """Each cell's expected shares of its units, from the weights it assigned with.

    weights: (..., variants), one row per cell (any leading shape). With a holdout, every
    cell's shares are (1 − holdout) × its normalised weights and, last, the holdout's share.
    """
    weights = np.asarray(weights, dtype=float)
    shares = weights / weights.sum(axis=-1, keepdims=True)
    if holdout > 0:
        held = np.full((*shares.shape[:-1], 1), holdout)
        return np.concatenate([(1 - holdout) * shares, held], axis=-1)
    return shares
