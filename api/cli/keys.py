"""`kairos keys`: create, list and revoke API keys; a token is printed once, at creation."""

import click

from api.cli.database import with_database
from experiments import keys as api_keys
from experiments.storage.database import Database


@click.group()
def keys():
    """API keys: create, list, revoke."""


@keys.command("create")
@click.argument("name")
@click.option(
    "--scopes",
    required=True,
    help=f"Comma-separated, from: {', '.join(api_keys.SCOPES)}. "
    "admin grants everything; manage also grants read.",
)
@with_database
def keys_create(database: Database, name: str, scopes: str):
    """Create a key named NAME; print its token alone on the last line."""
    with database.session(write=True) as session:
        key, token = api_keys.create_key(
            session=session, name=name, scopes=api_keys.parse_scopes(scopes)
        )
        click.echo(f"Created key {key.id} '{key.name}' with scopes {key.scopes}.", err=True)
        click.echo("The token is shown only now; store it safely:", err=True)
    click.echo(token)


@keys.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@with_database
def keys_list(database: Database, include_revoked: bool):
    """List keys (never their tokens)."""
    with database.session() as session:
        rows = api_keys.list_keys(session=session, include_revoked=include_revoked)
    if not rows:
        click.echo("No keys. Create one with: kairos keys create NAME --scopes admin")
        return
    click.echo(
        f"{'id':>4}  {'name':<24} {'scopes':<26} {'token':<16} {'created (UTC)':<19}  revoked"
    )
    for key in rows:
        revoked = key.revoked_at.strftime("%Y-%m-%d %H:%M") if key.revoked_at else ""
        click.echo(
            f"{key.id:>4}  {key.name:<24} {key.scopes:<26} {key.prefix + '…':<16} "
            f"{key.created_at:%Y-%m-%d %H:%M:%S}  {revoked}"
        )


@keys.command("revoke")
@click.argument("name_or_id")
@with_database
def keys_revoke(database: Database, name_or_id: str):
    """Revoke the key with this id, or every active key with this name."""
    with database.session(write=True) as session:
        revoked = api_keys.revoke_keys(session=session, name_or_id=name_or_id)
    for key in revoked:
        click.echo(f"Revoked key {key.id} '{key.name}'.")
