"""`kairos learnings`: search the learnings registry (a table) or export it (CSV or JSON),
with the same filters as the API's search."""

import click

from api.cli.database import with_database
from experiments.storage.database import Database


def _learning_filters(function):
    """The registry's filters, shared by `search` and `export`."""
    options = [
        click.option("--segment"),
        click.option("--metric"),
        click.option("--factor", help="timing, tone, channel… or 'variant'"),
        click.option("--level"),
        click.option("--channel"),
        click.option("--experiment", help="An experiment's key."),
        click.option("--verdict", type=click.Choice(["win", "loss", "flat", "inconclusive"])),
        click.option("--tag", "tags", multiple=True, help="Repeat for several (all must match)."),
        click.option("--since", type=click.DateTime(), help="Published on or after (UTC)."),
        click.option("--until", type=click.DateTime(), help="Published on or before (UTC)."),
        click.option("-q", "--query", "q", help="Text search over summary, hypothesis, notes."),
        click.option(
            "--sort",
            type=click.Choice(["date", "-date", "lift", "-lift"]),
            default="-date",
            show_default=True,
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _search(database: Database, limit: int, sort: str, **given):
    from datetime import UTC

    from experiments.learnings.record import as_record
    from experiments.learnings.search import Filters, search

    for name in ("since", "until"):
        if given[name] is not None:
            given[name] = given[name].replace(tzinfo=UTC)
    given["tags"] = tuple(given["tags"])
    with database.session() as session:
        items, total = search(session=session, filters=Filters(**given), sort=sort, limit=limit)
        return [as_record(x) for x in items], total


@click.group("learnings")
def learnings_group():
    """The learnings registry: what worked, for whom, and how sure we are."""


@learnings_group.command("search")
@_learning_filters
@click.option("--limit", default=30, show_default=True, type=click.IntRange(1, 10_000))
@with_database
def learnings_search(database: Database, limit: int, sort: str, **given):
    """Find learnings and print them as a table.

    \b
    Examples:
      kairos learnings search --segment newcomers --metric activated --verdict win
      kairos learnings search --factor channel --level push --sort -lift
      kairos learnings search -q "morning commute"
    """
    records, total = _search(database, limit, sort, **given)
    if not records:
        click.echo("No learning matches.")
        return
    widths = (5, 20, 12, 12, 26, 9, 24, 6, 8)
    header = (
        "id",
        "experiment",
        "segment",
        "metric",
        "factor=level",
        "lift",
        "95% interval",
        "P",
        "verdict",
    )
    click.echo("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for r in records:
        lift = "" if r["lift_mean"] is None else f"{r['lift_mean']:+.1%}"
        interval = "" if r["lift_low"] is None else f"{r['lift_low']:+.1%} to {r['lift_high']:+.1%}"
        prob = "" if r["prob_better"] is None else f"{r['prob_better']:.2f}"
        level = f"{r['factor']}={r['level']}" if r["factor"] else ""
        cells = (
            str(r["id"]),
            r["experiment_key"] or "(manual)",
            r["segment"] or "",
            r["metric"] or "",
            level,
            lift,
            interval,
            prob,
            r["verdict"],
        )
        click.echo("  ".join(str(c)[:w].ljust(w) for c, w in zip(cells, widths, strict=True)))
    for r in records[:5]:
        click.echo(f"\n  #{r['id']}: {r['summary']}")
    if total > len(records):
        click.echo(f"\n{len(records)} of {total} shown; --limit shows more.")


@learnings_group.command("export")
@_learning_filters
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, writable=True), help="Default: stdout."
)
@click.option("--limit", default=100_000, show_default=True, type=click.IntRange(1))
@with_database
def learnings_export(
    database: Database, fmt: str, output: str | None, limit: int, sort: str, **given
):
    """Export learnings (every one, or those the filters pick) as CSV or JSON."""
    import json

    from experiments.learnings.record import as_csv

    records, _ = _search(database, limit, sort, **given)
    if fmt == "json":
        data = json.dumps(records, indent=2, ensure_ascii=False) + "\n"
    else:
        data = as_csv(records)
    if output:
        with open(output, "w", encoding="utf-8", newline="") as handle:
            handle.write(data)
        click.echo(f"{len(records)} learning(s) written to {output}.", err=True)
    else:
        click.echo(data, nl=False)
