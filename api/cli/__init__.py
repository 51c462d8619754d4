"""The `kairos` command line: one module per command group, registered on `main` here.

- serve.py: `kairos serve` (the HTTP API) and `kairos worker` (the PyMC analysis jobs);
- db.py: `kairos db`, schema migrations;
- keys.py: `kairos keys`, API keys;
- stats.py: `kairos stats`, the sufficient statistics checked against the raw rows;
- learnings.py: `kairos learnings`, the learnings registry searched and exported;
- simulate.py: `kairos simulate`, the options of the simulator (the top-level `simulator`
  package), which drives a running Kairos over HTTP;
- database.py: `with_database`, how a command gets the configured database.

A command parses its options, calls one domain function (or the simulator) and prints what it
answers; the domain lives in experiments/.
"""

import click

from api.cli.db import db
from api.cli.keys import keys
from api.cli.learnings import learnings_group
from api.cli.serve import serve, worker
from api.cli.simulate import simulate
from api.cli.stats import stats


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kairos", prog_name="kairos")
def main():
    """Kairos: decide the timing, tone and channel of lifecycle messages.

    \b
    Start here:
      kairos serve                          set up the database and serve on 127.0.0.1:8000
      kairos keys create NAME --scopes read create an API key (the token is the last line)
      kairos simulate                       drive a running Kairos with synthetic users
      kairos learnings search --verdict win what the registry has learned
      kairos worker                         run PyMC analysis jobs (PostgreSQL deployments)

    The database is KAIROS_DATABASE_URL (default: a SQLite file in the instance folder).
    """


main.add_command(serve)
main.add_command(worker)
main.add_command(db)
main.add_command(keys)
main.add_command(stats)
main.add_command(learnings_group)
main.add_command(simulate)
