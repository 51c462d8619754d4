"""`kairos simulate`: the simulator's options; the simulator (the top-level `simulator`
package) drives a running Kairos over HTTP and prints what the bandit learned."""

import click


@click.command()
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="A running Kairos.")
@click.option(
    "--token",
    envvar="KAIROS_TOKEN",
    required=True,
    help="An admin key's token (the simulated clock needs one); or set KAIROS_TOKEN.",
)
@click.option("--experiment", default="simulated-onboarding", show_default=True)
@click.option("--hours", default=48, show_default=True, type=click.IntRange(1, 24 * 60))
@click.option("--users-per-hour", default=400, show_default=True, type=click.IntRange(1, 10_000))
@click.option(
    "--seed",
    default=1,
    show_default=True,
    type=int,
    help="Fixes how the users behave; every run still brings new users.",
)
def simulate(url: str, token: str, experiment: str, hours: int, users_per_hour: int, seed: int):
    """Drive a running Kairos with synthetic users and report what the bandit learned.

    Users of three segments arrive every simulated hour; the simulator knows how each segment
    truly responds to timing, tone and channel, asks Kairos which message to send, reports
    activations (hours later) and suppressed sends, and finally compares the bandit with an
    oracle and with a uniform split.

    Run it again to continue the experiment: new users, on a simulated clock that starts after
    the experiment's.
    """
    from simulator import run
    from simulator.client import KairosClient, SimulationError

    if not token.isascii() or not token.isprintable() or " " in token:
        # An HTTP header cannot carry it (urllib would fail with a traceback): most likely
        # the README's placeholder, pasted as is.
        raise click.BadParameter(
            f"{token!r} is not a token; pass the one 'kairos serve' printed (kairos_ and 43 "
            "letters, digits, - or _).",
            param_hint="--token / KAIROS_TOKEN",
        )
    click.echo(
        f"Simulating {hours} h × {users_per_hour:,} users against {url} "
        f"(experiment '{experiment}', seed {seed})…"
    )
    try:
        run.simulate(
            KairosClient(url, token),
            key=experiment,
            hours=hours,
            users_per_hour=users_per_hour,
            seed=seed,
            echo=click.echo,
        )
    except SimulationError as error:
        raise click.ClickException(str(error)) from error
