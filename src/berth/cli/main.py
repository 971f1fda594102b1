"""Entry point of the `berth` command."""

import typer

from berth.cli import admin, audit, endpoint, model, org, platform_key, project, tenant, user
from berth.cli.login import login, logout
from berth.cli.output import BerthGroup
from berth.cli.up import up

app = typer.Typer(
    cls=BerthGroup,
    name="berth",
    help="Serve machine-learning models behind managed, OpenAI-compatible endpoints.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
app.command("up")(up)
app.command("login")(login)
app.command("logout")(logout)
app.add_typer(endpoint.app, name="endpoint")
app.add_typer(model.app, name="model")
app.add_typer(project.app, name="project")
app.add_typer(tenant.app, name="tenant")
app.add_typer(user.app, name="user")
app.add_typer(platform_key.app, name="platform-key")
app.add_typer(org.app, name="org")
app.add_typer(audit.app, name="audit")
app.add_typer(admin.app, name="admin")


@app.callback()
def _root() -> None:
    """Serve machine-learning models behind managed, OpenAI-compatible endpoints."""


def main() -> None:
    app()
