"""The figures of each page: domain answers (results, allocation history, evidence) laid out
as the rows and series the plots draw. Layout only; every number comes from the answer.
"""

from markupsafe import Markup

from api.pages import plots


def _rate_fmt(method: str):
    if method == "beta-binomial":
        return lambda v, digits=1: f"{v * 100:.{digits}f}%"
    return lambda v, digits=2: f"{v:.{digits}f}"


def lift_forest(answer: dict) -> Markup:
    """Each variant's lift vs the control with its 95% interval, one group per segment."""
    order = _variant_order(answer)
    rows = []
    for block in answer["segments"]:
        for v in block["variants"]:
            label = "holdout" if v["holdout"] else v["variant"]
            row = {"group": f"Segment: {block['segment']}", "label": label}
            if v["holdout"]:
                row["colour"] = "#555"
            else:
                row["colour"] = plots.colour(order.get(v["variant"], 0))
            if v["lift"] is None:
                row.update(mean=None, note="control" if not v["holdout"] else "no estimate")
            else:
                row.update(mean=v["lift"]["mean"], low=v["lift"]["ci"][0], high=v["lift"]["ci"][1])
            rows.append(row)
    return plots.forest(
        rows,
        title=f"Lift vs control on {answer['metric']}, per segment (95% intervals)",
        x_label=f"Relative lift in {answer['metric']} vs the control (%)",
    )


def _variant_order(answer: dict) -> dict[str, int]:
    names = [v["variant"] for v in answer["segments"][0]["variants"] if not v["holdout"]]
    return {name: i for i, name in enumerate(names)}


def rate_densities(answer: dict, curves: list[dict], segment: str) -> Markup:
    fmt = _rate_fmt(answer["method"])
    unit = "rate (%)" if answer["method"] == "beta-binomial" else "mean per unit"
    return plots.densities(
        [
            {
                "label": "holdout" if c["holdout"] else arm_label(c["variant"]),
                "x": c["x"],
                "y": c["y"],
            }
            for c in curves
        ],
        title=f"Posterior of each arm's {answer['metric']} {unit}, segment {segment}",
        x_label=f"{answer['metric']} {unit}",
        fmt=lambda v: fmt(v, 1),
    )


def arm_label(variant: str) -> str:
    """A legend's name for an arm: a factorial variant by its levels alone ("morning · push"
    for "timing=morning,channel=push"), so that legends are not cut where arms differ."""
    parts = [part.partition("=") for part in variant.split(",")]
    if all(equals for _, equals, _ in parts):
        return " · ".join(level for _, _, level in parts)
    return variant


def weight_history(history: dict) -> list[tuple[str, Markup]]:
    """Per segment, the bandit's weight of each variant over allocation periods."""
    labels = [str(n) for n in history["periods"]]
    figures = []
    for segment, lines in history["weights"].items():
        figures.append(
            (
                segment,
                plots.series(
                    labels,
                    {arm_label(name): values for name, values in lines.items()},
                    title=f"Allocation weights in segment {segment}, by period",
                    x_label="allocation period",
                    y_label="weight (share of units)",
                    y_fmt=lambda v: f"{v:.0%}",
                    y_max=1.0,
                    height=260,
                ),
            )
        )
    return figures


def units_over_time(units: dict) -> Markup | None:
    if not units["times"]:
        return None
    return plots.series(
        [plots.time_label(t) for t in units["times"]],
        {arm_label(name): values for name, values in units["units"].items()},
        title="Cumulative units assigned to each arm over time",
        x_label=f"time (UTC, per {units['step']})",
        y_label="units assigned (cumulative)",
        y_fmt=lambda v: f"{v:,.0f}",
    )


def factorial_effects(result: dict) -> list[tuple[str, Markup]]:
    """Main effects (lift, 95%) and interactions (log-odds) of a factorial analysis."""
    figures = []
    for block in result.get("segments", []):
        mains = [
            {
                "label": f"{e['factor']}={e['level']} (vs {e['baseline_level']})",
                "mean": e["lift"]["mean"],
                "low": e["lift"]["ci"][0],
                "high": e["lift"]["ci"][1],
                "colour": plots.colour(0),
            }
            for e in block.get("main_effects", [])
            if e.get("lift")
        ]
        inter = [
            {
                "label": " × ".join(
                    f"{f}={lv}" for f, lv in zip(e["factors"], e["levels"], strict=True)
                ),
                "mean": e["log_odds"]["mean"],
                "low": e["log_odds"]["ci"][0],
                "high": e["log_odds"]["ci"][1],
                "colour": plots.colour(1),
            }
            for e in block.get("interactions", [])
        ]
        segment = block["segment"]
        if mains:
            figures.append(
                (
                    f"Main effects, segment {segment}",
                    plots.forest(
                        mains,
                        title=f"Main effect of each factor level, segment {segment}",
                        x_label="Relative lift vs the baseline level (%)",
                    ),
                )
            )
        if inter:
            figures.append(
                (
                    f"Interactions, segment {segment}",
                    plots.forest(
                        inter,
                        title=f"Two-way interactions, segment {segment}",
                        x_label="Interaction (log-odds)",
                        fmt=lambda v, digits=2: f"{v:+.{digits}f}",
                    ),
                )
            )
    return figures


def hierarchical_effects(result: dict) -> list[tuple[str, Markup]]:
    """Each variant's lift per segment, shrunk toward the pooled effect."""
    rows = []
    for block in result.get("segments", []):
        for v in block["variants"]:
            row = {"group": f"Segment: {block['segment']}", "label": v["variant"]}
            if v.get("lift") is None:
                row.update(mean=None, note="control")
            else:
                row.update(mean=v["lift"]["mean"], low=v["lift"]["ci"][0], high=v["lift"]["ci"][1])
            rows.append(row)
    if not rows:
        return []
    return [
        (
            "Segment effects, partially pooled",
            plots.forest(
                rows,
                title="Lift vs control per segment, shrunk toward the pooled effect (95%)",
                x_label="Relative lift vs the control (%)",
            ),
        )
    ]


def evidence_forest(answer: dict) -> Markup | None:
    if not answer.get("experiments"):
        return None
    studies = [
        {
            "label": e["experiment"] or "(deleted experiment)",
            "mean": e["lift"]["mean"],
            "low": e["lift"]["ci"][0],
            "high": e["lift"]["ci"][1],
            "weight": e["weight"],
        }
        for e in answer["experiments"]
    ]
    pooled = None
    if answer.get("pooled"):
        lift = answer["pooled"]["lift"]
        pooled = {"mean": lift["mean"], "low": lift["ci"][0], "high": lift["ci"][1]}
    return plots.meta_forest(
        studies,
        pooled,
        title=(
            f"Evidence for {answer['factor']}={answer['level']} on {answer['metric']} "
            f"in segment {answer['segment']}, by experiment, pooled"
        ),
    )


def learning_bar(learning) -> Markup:
    if learning.lift_mean is None:
        return plots.interval_bar(None, None, None, label="no lift estimate")
    label = (
        f"Lift {plots.percent(learning.lift_mean, 1)}, 95% interval "
        f"{plots.percent(learning.lift_low, 1)} to {plots.percent(learning.lift_high, 1)}"
        if learning.lift_low is not None
        else f"Lift {plots.percent(learning.lift_mean, 1)}"
    )
    return plots.interval_bar(
        learning.lift_mean,
        learning.lift_low if learning.lift_low is not None else learning.lift_mean,
        learning.lift_high if learning.lift_high is not None else learning.lift_mean,
        label=label,
    )
