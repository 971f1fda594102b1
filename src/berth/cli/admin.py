"""`berth admin`: commands for the server machine that work on Berth's database directly.

They read the database settings that `berth up` reads (BERTH_HOME or --home,
BERTH_DATABASE_URL) and need neither a running server nor a platform API key, so they
help where the API cannot, such as when every OrgAdmin has lost their keys.
"""

import getpass
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from berth.cli.output import (
    BerthGroup,
    CliError,
    OutputFormat,
    OutputOption,
    format_time,
    print_fields,
    print_json,
)
from berth.db.engine import Database
from berth.db.models import User
from berth.db.transactions import run_transaction
from berth.errors import BerthError
from berth.service import users

DEFAULT_KEY_DESCRIPTION = "created with berth admin create-key"

app = typer.Typer(
    cls=BerthGroup,
    rich_markup_mode="markdown",
    no_args_is_help=True,
    help="Recover access on the server machine, working on the database directly.",
)


@app.command("create-key")
def create_key(
    user: Annotated[
        str,
        typer.Option(
            "--user", show_default=False, help="Name or ID of the OrgAdmin who gets the key."
        ),
    ],
    description: Annotated[
        str, typer.Option("--description", help="Description that identifies the key.")
    ] = DEFAULT_KEY_DESCRIPTION,
    home: Annotated[
        str | None,
        typer.Option(help="Berth home folder of the server [default: $BERTH_HOME or ~/.berth]"),
    ] = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Create a platform API key for an OrgAdmin and print it once.

    For an OrgAdmin who has lost every key and has no password. Run it on the server
    machine with the settings that `berth up` uses: BERTH_HOME (or --home) and, for
    PostgreSQL, BERTH_DATABASE_URL. It writes to the database directly, also while the
    server runs. The user must exist, be an OrgAdmin and be enabled. The audit log
    records the new key with the operating-system user who ran the command.
    """
    from berth.cli.up import load_settings

    settings = load_settings(home=home)
    database = _open_database(settings.resolved_database_url)
    operator = _operating_system_user()
    try:
        with database.session() as session:
            account, row, key = run_transaction(
                session,
                lambda: users.create_recovery_key(session, user, description, operator),
                "admin key creation",
            )
            owner = {"id": account.id, "name": account.username}
    except BerthError as exc:
        raise CliError(exc.message) from None
    finally:
        database.dispose()

    if output == OutputFormat.JSON:
        print_json(
            {
                "id": row.id,
                "prefix": row.key_prefix,
                "description": row.description,
                "created_at": row.created_at.isoformat(),
                "revoked_at": None,
                "key": key,
                "user": owner,
            }
        )
        return
    print_fields(
        [
            ("User", owner["name"]),
            ("Key ID", row.id),
            ("Key", key),
            ("Description", row.description or "-"),
            ("Created", format_time(row.created_at.isoformat())),
        ]
    )
    typer.echo()
    typer.echo(
        "Save this key now: Berth stores only a hash of it and shows it only this once. "
        "Use it as BERTH_API_KEY or save it with `berth login`."
    )


def _open_database(url: str) -> Database:
    """Open the server's database, or raise CliError when it is missing or unreachable.

    A SQLite file that does not exist is not created, because an empty database would
    only hide a wrong BERTH_HOME.
    """
    parsed = make_url(url)
    # The URL may contain a password, which messages must not repeat.
    url_without_password = parsed.render_as_string(hide_password=True)
    fix = (
        "run the command with the settings of the server: its home folder in BERTH_HOME or "
        "--home and, for PostgreSQL, its BERTH_DATABASE_URL"
    )
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        raise CliError(f"no Berth database at {parsed.database or url_without_password}; {fix}")

    database = Database(url)
    try:
        has_users = inspect(database.engine).has_table(User.__tablename__)
    except SQLAlchemyError as exc:
        database.dispose()
        reason = getattr(exc, "orig", None) or exc
        raise CliError(
            f"cannot open the database {url_without_password}: {reason}; {fix}"
        ) from None
    if not has_users:
        database.dispose()
        raise CliError(
            f"the database {url_without_password} contains no Berth tables, because no "
            f"Berth server has started on it yet; {fix}"
        )
    return database


def _operating_system_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        # No login name in the environment and no passwd entry for the process's uid.
        return "unknown"
