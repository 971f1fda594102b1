"""`berth model`: browse the Model Hub, and register, change and delete models."""

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from berth.cli.connection import ApiKeyOption, ServerOption, TenantOption, connect
from berth.cli.output import (
    BerthGroup,
    Json,
    OutputFormat,
    OutputOption,
    TimeStyle,
    cli_names_in_errors,
    confirm_on_terminal,
    format_size,
    format_time,
    new_table,
    print_fields,
    print_json,
    print_page_note,
    print_table,
    short_checksum,
)
from berth.states import ModelSharing

app = typer.Typer(
    cls=BerthGroup,
    rich_markup_mode="markdown",
    no_args_is_help=True,
    help="Browse the Model Hub, and register, change and delete models.",
)


class ModelGroup(StrEnum):
    """The groups of the Model Hub, as the API's `group` filter names them."""

    MINE = "mine"
    SHARED = "shared"
    BERTH = "berth"
    ALL = "all"


_SHARING_TEXT = {
    ModelSharing.PRIVATE: "private (its owner only)",
    ModelSharing.TENANT: "its tenant",
    ModelSharing.ALL_TENANTS: "all tenants",
}

ModelArgument = Annotated[str, typer.Argument(show_default=False, help="Model name or ID.")]
SharingOption = Annotated[
    ModelSharing | None,
    typer.Option(
        "--sharing",
        case_sensitive=False,
        show_default=False,
        help="Who may see and deploy the model: private (its owner), tenant (the members "
        "of its tenant) or all_tenants (everyone; an OrgAdmin must allow this with "
        "`berth org set-sharing --on`).",
    ),
]
DescriptionOption = Annotated[
    str | None,
    typer.Option("--description", show_default=False, help="Description of the model."),
]


@app.command("list")
def list_models(
    ml_app: Annotated[
        str | None,
        typer.Option(
            "--ml-app",
            show_default=False,
            help="List only models of this ML App, such as text-generation, "
            "text-embedding or echo.",
        ),
    ] = None,
    architecture: Annotated[
        str | None,
        typer.Option(show_default=False, help="List only this architecture, such as BertModel."),
    ] = None,
    field_of_application: Annotated[
        str | None,
        typer.Option(
            show_default=False,
            help="List only this field of application, such as Language.",
        ),
    ] = None,
    base: Annotated[
        bool | None,
        typer.Option(
            "--base/--no-base",
            show_default=False,
            help="List only base models, which cannot be deployed, or only the other models.",
        ),
    ] = None,
    search: Annotated[
        str | None,
        typer.Option(
            show_default=False,
            help="List only models whose name or description contains this text.",
        ),
    ] = None,
    group: Annotated[
        ModelGroup,
        typer.Option(
            case_sensitive=False,
            help="List only your models (mine), models that others share with you "
            "(shared), the built-in models (berth), or all of them.",
        ),
    ] = ModelGroup.ALL,
    owner: Annotated[
        str | None,
        typer.Option(
            show_default=False,
            help="List only models of this owner: a user name, 'me' for yours, or "
            "'berth' for the built-in models.",
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Maximum number of models.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Number of models to skip.")] = 0,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """List the models of the Model Hub that you can see, with optional filters."""
    with connect(server, api_key, tenant) as client:
        if owner is not None and owner.strip().lower() == "me":
            owner = client.whoami()["user"]["name"]
        page = client.list_models(
            limit=limit,
            offset=offset,
            ml_app=ml_app,
            architecture=architecture,
            field_of_application=field_of_application,
            base=base,
            search=search,
            group=group.value,
            owner=owner,
        )
    if output == OutputFormat.JSON:
        print_json(page)
        return
    if page["items"]:
        table = new_table("Name", "ML App", "Architecture", "Field", "Base", "Owner")
        for model in page["items"]:
            table.add_row(
                model["name"],
                model["ml_app_name"],
                model["architecture"],
                model["field_of_application"],
                "yes" if model["is_base"] else "no",
                model["owner"]["name"] if model["owner"] else "berth",
            )
        print_table(table)
    print_page_note(page, "models")


@app.command()
def info(
    model: ModelArgument,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Show a model of the Model Hub."""
    with connect(server, api_key, tenant) as client:
        data = client.get_model(model)
    if output == OutputFormat.JSON:
        print_json(data)
    else:
        _print_model(data)


@app.command()
def register(
    name: Annotated[
        str, typer.Argument(show_default=False, help="Name of the model, unique in the tenant.")
    ],
    ml_app: Annotated[
        str,
        typer.Option(
            "--ml-app",
            show_default=False,
            help="ML App that serves the model: text-generation, text-embedding or echo.",
        ),
    ],
    path: Annotated[
        str,
        typer.Option(
            help="Folder of the model files on the Berth server. A relative path is taken "
            "from the current folder. Not needed for echo.",
        ),
    ] = "",
    architecture: Annotated[
        str, typer.Option(help="Model architecture, such as LlamaForCausalLM.")
    ] = "",
    field_of_application: Annotated[
        str, typer.Option(help="Field of application, such as Language or Vision.")
    ] = "",
    description: Annotated[str, typer.Option(help="Description of the model.")] = "",
    base: Annotated[
        bool,
        typer.Option(
            "--base",
            help="Mark the model as a base model, for training only: it cannot "
            "be deployed to an endpoint.",
        ),
    ] = False,
    sharing: SharingOption = ModelSharing.PRIVATE,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Add a model whose files are already on the Berth server to the Model Hub.

    The model belongs to you and to the tenant you act in. Berth checks the files as
    `berth model import` does but leaves them where they are. `import` also detects the
    ML App and architecture, and it can copy the files into Berth's storage. Only an
    OrgAdmin may register a model with files. Any member may register an echo model.
    """
    if path and not path.startswith("~") and not Path(path).is_absolute():
        # The server would resolve a relative path against its own working folder.
        path = str(Path.cwd() / path)
    names = {"name": "model name", "path": "--path"}
    with connect(server, api_key, tenant) as client, cli_names_in_errors(names):
        data = client.register_model(
            name,
            ml_app,
            path,
            architecture=architecture,
            field_of_application=field_of_application,
            description=description,
            is_base=base,
            sharing=(sharing or ModelSharing.PRIVATE).value,
        )
    if output == OutputFormat.JSON:
        print_json(data)
        return
    typer.echo(f"Registered model {data['name']} in the Model Hub.")
    typer.echo()
    _print_model(data)


@app.command("import")
def import_model(
    path: Annotated[
        str,
        typer.Argument(
            show_default=False,
            help="Model folder, Hugging Face cache folder (models--ORG--NAME) or .gguf file "
            "on the Berth server. A relative path is taken from the current folder.",
        ),
    ],
    name: Annotated[
        str,
        typer.Option(
            "--name",
            show_default=False,
            help="Model name. If you already have a model of that name, the files become "
            "a new checkpoint of it.",
        ),
    ],
    ml_app: Annotated[
        str | None,
        typer.Option("--ml-app", help="ML App, when it cannot be detected from the files."),
    ] = None,
    checkpoint: Annotated[str, typer.Option(help="Name of the new checkpoint.")] = "main",
    link: Annotated[
        bool,
        typer.Option("--link", help="Leave the files where they are instead of copying them."),
    ] = False,
    base: Annotated[
        bool,
        typer.Option(
            "--base",
            help="Mark the model as a base model, for training only: it cannot "
            "be deployed to an endpoint.",
        ),
    ] = False,
    description: Annotated[str, typer.Option(help="Description of the model.")] = "",
    sharing: SharingOption = ModelSharing.PRIVATE,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Import model files from a path on the Berth server into the Model Hub.

    Berth detects the format, architecture and ML App, checks that the weights are
    complete, records the size and a checksum, and copies the files into its storage
    (or links them with --link). Deploy a checkpoint other than the newest one with
    `--model-checkpoint MODEL:CHECKPOINT`.

    Only an OrgAdmin may import, because the server's file system belongs to the
    organization. An OrgAdmin can import a model for a tenant with --tenant and
    --sharing tenant.
    """
    if not path.strip():
        # Made absolute below, an empty path would become the current folder.
        raise typer.BadParameter(
            "the path is empty; give the model folder or .gguf file to import",
            param_hint="'PATH'",
        )
    if not path.startswith("~") and not Path(path).is_absolute():
        # The server would resolve a relative path against its own working folder.
        path = str(Path.cwd() / path)
    names = {"name": "--name", "checkpoint": "--checkpoint", "ml_app": "--ml-app"}
    with connect(server, api_key, tenant) as client, cli_names_in_errors(names):
        data = client.import_model(
            path,
            name,
            ml_app=ml_app,
            is_base=base,
            link=link,
            checkpoint=checkpoint,
            description=description,
            sharing=(sharing or ModelSharing.PRIVATE).value,
        )
    if output == OutputFormat.JSON:
        print_json(data)
        return
    newest = data["checkpoints"][-1]
    typer.echo(
        f"Imported checkpoint {newest['name']} of model {data['name']} "
        f"({newest['size_bytes']} bytes, {newest['checksum']})."
    )
    typer.echo()
    _print_model(data)


@app.command()
def update(
    model: ModelArgument,
    description: DescriptionOption = None,
    sharing: SharingOption = None,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Change a model's description or sharing.

    Only the model's owner, a TenantAdmin of its tenant or an OrgAdmin may.
    """
    if description is None and sharing is None:
        raise typer.BadParameter("nothing to update; pass --description or --sharing")
    with connect(server, api_key, tenant) as client:
        data = client.update_model(
            model, description=description, sharing=sharing.value if sharing else None
        )
    if output == OutputFormat.JSON:
        print_json(data)
    else:
        _print_model(data)


@app.command()
def delete(
    model: ModelArgument,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Delete without asking for confirmation.")
    ] = False,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Remove a model from the Model Hub. The server rejects this while an endpoint uses it.

    The files that import copied into Berth's storage are removed too; files imported
    with --link or registered stay where they are. On a terminal, the command prompts
    for confirmation unless --yes is given. With -o json it prints the model as it was
    before the deletion.
    """
    with connect(server, api_key, tenant) as client:
        data = client.get_model(model)
        confirm_on_terminal(f"Delete model '{data['name']}' from the Model Hub?", yes)
        client.delete_model(data["id"])
    if output == OutputFormat.JSON:
        print_json(data)
    else:
        typer.echo(f"Deleted model {data['name']} from the Model Hub.")


@app.command("delete-checkpoint")
def delete_checkpoint(
    reference: Annotated[
        str,
        typer.Argument(
            metavar="MODEL:CHECKPOINT", help="Model name or ID and checkpoint name or ID."
        ),
    ],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Delete without asking for confirmation.")
    ] = False,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Remove one checkpoint of a model, with the files that import copied for it.

    The server rejects this while an endpoint uses the checkpoint (update it to another
    checkpoint first) and for a model's only checkpoint (delete the model instead).
    Files imported with --link stay where they are. On a terminal, the command prompts
    for confirmation unless --yes is given. With -o json it prints the checkpoint as it
    was before the deletion.
    """
    model_ref, separator, checkpoint_ref = reference.partition(":")
    if not separator or not model_ref.strip() or not checkpoint_ref.strip():
        raise typer.BadParameter(
            f"'{reference}' names no checkpoint; give MODEL:CHECKPOINT, for example "
            "my-llama:v2 (`berth model info MODEL` lists the checkpoints)",
            param_hint="'MODEL:CHECKPOINT'",
        )
    with connect(server, api_key, tenant) as client:
        model = client.get_model(model_ref.strip())
        wanted = checkpoint_ref.strip()
        matches = [
            row
            for row in model["checkpoints"]
            if row["id"] == wanted or row["name"].lower() == wanted.lower()
        ]
        label = f"{model['name']}:{matches[0]['name'] if matches else wanted}"
        confirm_on_terminal(f"Delete checkpoint '{label}' and its copied files?", yes)
        client.delete_checkpoint(model["id"], matches[0]["id"] if matches else wanted)
    if output == OutputFormat.JSON:
        print_json(matches[0] if matches else {"name": wanted})
    else:
        typer.echo(f"Deleted checkpoint {label}.")


def _print_model(model: Json) -> None:
    owner = model["owner"]["name"] if model["owner"] else "built in"
    print_fields(
        [
            ("Name", model["name"]),
            ("ID", model["id"]),
            ("Description", model["description"] or "-"),
            ("ML App", f"{model['ml_app_name']} ({model['ml_app']})"),
            ("Architecture", model["architecture"] or "-"),
            ("Field", model["field_of_application"] or "-"),
            ("Base model", "yes, for training only" if model["is_base"] else "no"),
            ("Owner", owner),
            ("Shared with", "everyone" if model["is_builtin"] else _SHARING_TEXT[model["sharing"]]),
            ("Created", format_time(model["created_at"])),
        ]
    )
    checkpoints = model.get("checkpoints") or []
    if checkpoints:
        typer.echo()
        _print_checkpoints(checkpoints)


_CHAT_TEMPLATE_TEXT = {True: "yes", False: "no", None: "unknown"}


def _print_checkpoints(checkpoints: list[Json]) -> None:
    table = new_table("Checkpoint", "Format", "Size", "Checksum", "Created")
    for checkpoint in checkpoints:
        # Berth lays out built-in checkpoints itself and records no size or checksum for them.
        builtin = checkpoint["format"] == "builtin"
        table.add_row(
            checkpoint["name"],
            checkpoint["format"],
            "-" if builtin else format_size(checkpoint["size_bytes"]),
            short_checksum(checkpoint["checksum"]),
            format_time(checkpoint["created_at"], style=TimeStyle.MINUTES),
        )
    print_table(table)
    # A second table, so that each one fits in 80 columns.
    typer.echo()
    contents = new_table("Checkpoint", "Architecture", "Chat template", "Context length")
    for checkpoint in checkpoints:
        trained = checkpoint.get("trained_context_length")
        contents.add_row(
            checkpoint["name"],
            checkpoint.get("architecture") or "unknown",
            _CHAT_TEMPLATE_TEXT[checkpoint.get("has_chat_template")],
            f"{trained} tokens" if trained is not None else "unknown",
        )
    print_table(contents)
