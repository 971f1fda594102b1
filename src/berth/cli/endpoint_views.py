"""Table output of endpoints and endpoint API keys."""

import json

import typer
from rich.table import Column

from berth.cli.output import (
    Json,
    TimeStyle,
    format_time,
    new_table,
    print_fields,
    print_page_note,
    print_table,
    stdout_console,
)
from berth.rollout import ServingInstance, differs_from_endpoint, rolling_update_note
from berth.states import (
    InstanceCounts,
    InstanceRow,
    InstanceState,
    KeyStatus,
    instance_counts,
    instances_summary,
    shown_instance_state,
    surplus_instance_ids,
)

SHORT_ID_LENGTH = 8


def state_text(endpoint: Json) -> str:
    if endpoint["state_reason"]:
        return f"{endpoint['state']} ({endpoint['state_reason']})"
    return endpoint["state"]


def list_state_text(endpoint: Json) -> str:
    """Return the state for a table row, marked when the endpoint's tenant is disabled
    because the gateway then rejects every request whatever the state."""
    # A server older than the CLI sends no `tenant_disabled`.
    if endpoint.get("tenant_disabled"):
        return f"{endpoint['state']} (tenant disabled)"
    return endpoint["state"]


def count_instances(endpoint: Json) -> InstanceCounts:
    """Count the endpoint's instances as `berth.states.instance_counts` does."""
    return instance_counts(endpoint["instances"], endpoint["generation"], _rows(endpoint))


def instances_text(endpoint: Json, ready_word: str = "ready") -> str:
    """Return "R of N ready", or "R of N new ready, O old serving" during a rolling
    update, followed by ", D draining" while instances drain."""
    return instances_summary(
        endpoint["instances"], endpoint["generation"], _rows(endpoint), ready_word
    )


def _rows(endpoint: Json) -> list[InstanceRow]:
    return [(row["id"], row["generation"], row["state"]) for row in endpoint["instance_list"]]


def _serving_instances(endpoint: Json) -> list[ServingInstance]:
    # A server older than the CLI reports no model per instance; "" marks it unknown.
    return [
        ServingInstance(
            row["id"],
            row["generation"],
            row["state"],
            row.get("model_name", ""),
            row.get("checkpoint_name", ""),
        )
        for row in endpoint["instance_list"]
    ]


def _checkpoint_name(endpoint: Json) -> str:
    checkpoint = endpoint.get("checkpoint")
    return checkpoint["name"] if checkpoint else ""


def rollout_text(endpoint: Json) -> str:
    """Return what the old instances of a rolling update still serve, or "" outside one
    (see `berth.rollout.rolling_update_note`)."""
    return rolling_update_note(
        endpoint["instances"],
        endpoint["generation"],
        endpoint["model"]["name"],
        _checkpoint_name(endpoint),
        _serving_instances(endpoint),
    )


def draining_instance_ids(endpoint: Json) -> set[str]:
    """Return the IDs of the Ready instances that the reconciler drains at its next step
    (see `berth.states.surplus_instance_ids`)."""
    return surplus_instance_ids(endpoint["instances"], endpoint["generation"], _rows(endpoint))


def runtime_text(endpoint: Json) -> str:
    """Return the runtimes the instances reported, each with its note, or "-" before any."""
    described = []
    for instance in endpoint["instance_list"]:
        runtime = instance.get("runtime", "")
        if not runtime:
            continue
        note = instance.get("runtime_note", "")
        text = f"{runtime} ({note})" if note else runtime
        if text not in described:
            described.append(text)
    return "; ".join(described) or "-"


def runtime_settings_fields(endpoint: Json) -> list[tuple[str, str]]:
    """Return a label and a value for each runtime setting that the endpoint's ML App uses."""
    settings = endpoint.get("runtime_settings") or {}
    fields = []
    if settings.get("max_batch_size") is not None:
        size = settings["max_batch_size"]
        unit = "text" if endpoint.get("ml_app") == "text-embedding" else "request"
        fields.append(("Max batch size", f"{size} {unit}{'' if size == 1 else 's'}"))
    if settings.get("max_batch_wait_ms") is not None:
        fields.append(("Max batch wait", f"{settings['max_batch_wait_ms']:g} ms"))
    if settings.get("runtime") is not None:
        fields.append(("Runtime choice", settings["runtime"]))
    if settings.get("max_completion_tokens") is not None:
        fields.append(("Max completion", f"{settings['max_completion_tokens']} tokens"))
    if settings.get("context_length") is not None:
        fields.append(("Context length", f"{settings['context_length']} tokens"))
    elif endpoint.get("ml_app") == "text-generation":
        # Unset, the runtime takes the model's trained length (at most 4096 on llama.cpp).
        fields.append(("Context length", "model default"))
    return fields


def model_text(endpoint: Json) -> str:
    """Return the deployed model as MODEL:CHECKPOINT, or MODEL when it has no checkpoint."""
    checkpoint = endpoint.get("checkpoint")
    if checkpoint:
        return f"{endpoint['model']['name']}:{checkpoint['name']}"
    return endpoint["model"]["name"]


def print_endpoint(endpoint: Json) -> None:
    sharing = "all tenants" if endpoint["share_with_all_tenants"] else "its tenant"
    rollout = rollout_text(endpoint)
    if rollout:
        typer.echo(rollout)
        typer.echo()
    print_fields(
        [
            ("Name", endpoint["name"]),
            ("ID", endpoint["id"]),
            ("Tenant", endpoint["tenant"]["name"]),
            ("Project", endpoint["project"]["name"]),
            ("Description", endpoint["description"] or "-"),
            ("Model", model_text(endpoint)),
            ("ML App", endpoint["ml_app_name"]),
            *runtime_settings_fields(endpoint),
            ("Runtime", runtime_text(endpoint)),
            ("State", state_text(endpoint)),
            ("Instances", instances_text(endpoint)),
            ("Shared with", sharing),
            ("Owner", endpoint["owner"]["name"]),
            ("URL", endpoint["url"]),
            ("OpenAI base URL", endpoint["openai_base_url"]),
            ("Version", str(endpoint["version"])),
            ("Created", format_time(endpoint["created_at"])),
            ("Updated", format_time(endpoint["updated_at"])),
        ]
    )
    if endpoint["instance_list"]:
        typer.echo()
        _print_instances(
            endpoint["instance_list"],
            draining_instance_ids(endpoint),
            show_model=_serves_other_models(endpoint),
        )


def _serves_other_models(endpoint: Json) -> bool:
    """Tell whether an instance is known to serve another model or checkpoint than the
    endpoint names."""
    model_name, checkpoint_name = endpoint["model"]["name"], _checkpoint_name(endpoint)
    return any(
        bool(row.model_name) and differs_from_endpoint(row, model_name, checkpoint_name)
        for row in _serving_instances(endpoint)
    )


def _print_instances(
    instances: list[Json], surplus_ids: set[str], show_model: bool = False
) -> None:
    """Print the instances as a table; `show_model` adds the model that each one serves."""
    columns = ["Instance", "State", "Generation", "Restarts", "PID", "Started", "Ready"]
    if show_model:
        columns.insert(2, "Model")
    table = new_table(*columns)
    for instance in instances:
        cells = [
            instance["id"][:SHORT_ID_LENGTH],
            shown_instance_state(instance["id"], instance["state"], surplus_ids),
            str(instance["generation"]),
            str(instance["restart_count"]),
            str(instance["pid"] or "-"),
            format_time(instance["started_at"], style=TimeStyle.TIME_IF_TODAY),
            format_time(instance["ready_at"], style=TimeStyle.TIME_IF_TODAY),
        ]
        if show_model:
            cells.insert(2, _instance_model_text(instance))
        table.add_row(*cells)
    print_table(table)
    for instance in instances:
        if not instance["last_error"]:
            continue
        short_id = instance["id"][:SHORT_ID_LENGTH]
        if instance["state"] == InstanceState.READY:
            # The error stays after a restart, so that it still shows why the instance restarted.
            typer.echo(
                f"Instance {short_id} is Ready again; its last error was: {instance['last_error']}"
            )
        else:
            typer.echo(f"Last error of instance {short_id}: {instance['last_error']}")


def _instance_model_text(instance: Json) -> str:
    """Return the model that an instance serves as MODEL:CHECKPOINT, or "-" when unknown."""
    model_name = instance.get("model_name", "")
    checkpoint_name = instance.get("checkpoint_name", "")
    if not model_name:
        return "-"
    return f"{model_name}:{checkpoint_name}" if checkpoint_name else str(model_name)


def ready_column_text(endpoint: Json) -> str:
    """Return "R/N" for the list's Ready column. During a rolling update "+O old" follows,
    where O counts the Ready instances of earlier generations."""
    counts = count_instances(endpoint)
    text = f"{counts.ready}/{endpoint['instances']}"
    if counts.old:
        text += f" +{counts.old_ready} old"
    return text


def print_endpoint_list(page: Json, show_tenant: bool = False) -> None:
    items = page["items"]
    if items:
        # Names stay on one line so that they copy whole into other commands.
        name_column = Column(
            "Name", no_wrap=True, min_width=max(len(endpoint["name"]) for endpoint in items)
        )
        columns = ["Tenant", "Project"] if show_tenant else ["Project"]
        table = new_table(name_column, *columns, "Model", "State", "Ready", "Created", "Owner")
        for endpoint in items:
            where = [endpoint["project"]["name"]]
            if show_tenant:
                where.insert(0, endpoint["tenant"]["name"])
            table.add_row(
                endpoint["name"],
                *where,
                model_text(endpoint),
                list_state_text(endpoint),
                ready_column_text(endpoint),
                format_time(endpoint["created_at"], style=TimeStyle.MINUTES),
                endpoint["owner"]["name"],
            )
        print_table(table)
    print_page_note(page, "endpoints")


def print_created(endpoint: Json) -> None:
    print_fields(
        [
            ("Endpoint", f"{endpoint['name']} (project {endpoint['project']['name']})"),
            ("ID", endpoint["id"]),
            ("URL", endpoint["url"]),
            ("State", state_text(endpoint)),
            ("FirstKey", endpoint["first_key"]),
        ]
    )
    typer.echo()
    print_usage_example(endpoint, endpoint["first_key"])


def print_usage_example(endpoint: Json, key: str) -> None:
    """Print a curl command that calls the endpoint's main OpenAI-compatible route."""
    model = endpoint["model"]["name"]
    if endpoint["ml_app"] == "text-embedding":
        route = "embeddings"
        body: Json = {"model": model, "input": ["Berth serves models."]}
    else:
        route = "chat/completions"
        body = {"model": model, "messages": [{"role": "user", "content": "Hello!"}]}
    when = "" if endpoint["state"] == "Live" else " once the endpoint is Live"
    typer.echo(f"Call it{when}, for example with curl:")
    typer.echo()
    typer.echo(f"  curl {endpoint['openai_base_url']}/{route} \\")
    typer.echo(f"    -H 'Authorization: Bearer {key}' \\")
    typer.echo("    -H 'Content-Type: application/json' \\")
    typer.echo(f"    -d '{json.dumps(body)}'")
    typer.echo()
    typer.echo(
        f"Any OpenAI client works too: set its base URL to {endpoint['openai_base_url']} "
        "and its API key to the endpoint key."
    )


def print_key(key: Json) -> None:
    print_fields(
        [
            ("ID", key["id"]),
            ("Key", key["key"]),
            ("Description", key["description"] or "-"),
            ("Status", key["status"]),
            ("FirstKey", "yes" if key["is_first"] else "no"),
            ("Owner", key["owner"]["name"]),
            ("Created", format_time(key["created_at"])),
            ("Revoked", format_time(key["revoked_at"])),
        ]
    )


# Spaces between two columns of a table from new_table.
_COLUMN_GAP = 2
# Minimum width of the Description column; a narrower terminal gets blocks of lines.
_MIN_DESCRIPTION_WIDTH = len("Description")


def print_key_list(keys: list[Json]) -> None:
    """Print keys as a table, or as one block of lines per key on a narrow terminal.

    IDs and keys stay on one line so that they copy whole. The table shortens the ID,
    as --apikey accepts its start, and leaves the times out, as info-apikey shows them.
    """
    if not keys:
        typer.echo("No API keys found.")
        return
    key_width = max(len(key["key"]) for key in keys)
    table_width = (
        SHORT_ID_LENGTH
        + key_width
        + len(KeyStatus.REVOKED)
        + _MIN_DESCRIPTION_WIDTH
        + 3 * _COLUMN_GAP
    )
    if stdout_console().width < table_width:
        _print_key_blocks(keys)
        return
    id_column = Column("ID", no_wrap=True)
    key_column = Column("Key", no_wrap=True, min_width=key_width)
    table = new_table(id_column, key_column, "Status", "Description")
    for key in keys:
        table.add_row(key["id"][:SHORT_ID_LENGTH], key["key"], key["status"], key["description"])
    print_table(table)


def _print_key_blocks(keys: list[Json]) -> None:
    for index, key in enumerate(keys):
        if index:
            typer.echo()
        print_fields(
            [
                ("ID", key["id"]),
                ("Key", key["key"]),
                ("Status", key["status"]),
                ("Description", key["description"] or "-"),
            ]
        )
