"""The SVG plots: accessible, escaped, and drawing what they are given."""

from api.pages import plots


def test_ticks_are_round_and_cover_the_range():
    assert plots.nice_ticks(-0.13, 0.42) == [0.0, 0.2, 0.4]
    assert plots.nice_ticks(-0.13, 0.42, 10) == [-0.1, 0.0, 0.1, 0.2, 0.3, 0.4]
    assert plots.nice_ticks(0, 1, 4) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert plots.nice_ticks(3, 3) == [3.0, 3.2, 3.4, 3.6, 3.8, 4.0]


def test_a_forest_plot_has_a_title_a_description_and_escapes_labels():
    svg = plots.forest(
        [
            {"label": "<b>a</b>", "mean": 0.1, "low": -0.05, "high": 0.3, "group": "all"},
            {"label": "control", "mean": None, "note": "control", "group": "all"},
        ],
        title="Lift & more",
        x_label="lift (%)",
    )
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg" role="img"')
    assert "aria-labelledby=" in svg and "<title" in svg and "<desc" in svg
    assert "Lift &amp; more" in svg and "&lt;b&gt;a&lt;/b&gt;" in svg and "<b>" not in svg
    assert "+10.0% (95% interval -5.0% to +30.0%)" in svg
    assert 'stroke-dasharray="4 3"' in svg  # the zero line


def test_every_plot_gets_its_own_ids():
    one = plots.interval_bar(0.1, 0.0, 0.2, label="x")
    two = plots.interval_bar(0.1, 0.0, 0.2, label="x")
    ident = one.split('aria-labelledby="', 1)[1].split(" ", 1)[0]
    assert ident not in two


def test_series_and_meta_forest_draw_every_line_and_the_pooled_diamond():
    svg = plots.series(
        ["1", "2", "3"],
        {"a": [0.5, 0.6, 0.7], "b": [0.5, 0.4, 0.3]},
        title="weights",
        x_label="period",
        y_label="weight",
        y_fmt=lambda v: f"{v:.0%}",
        y_max=1.0,
    )
    assert svg.count("<polyline") == 2 and "a: 70% at the end" in svg
    meta = plots.meta_forest(
        [{"label": "e1", "mean": 0.1, "low": 0.0, "high": 0.2, "weight": 1.0}],
        {"mean": 0.1, "low": 0.0, "high": 0.2},
        title="evidence",
    )
    assert "<rect" in meta and "Z" in meta and "pooled" in meta
