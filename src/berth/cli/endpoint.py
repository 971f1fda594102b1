"""`berth endpoint`: create, inspect, change, stop, restart and delete endpoints.

The command and option names follow the `snapi endpoint` CLI, so existing scripts
port over by changing the program name.
"""

import math
from enum import StrEnum
from typing import Annotated

import typer

from berth.cli import apikey
from berth.cli.connection import ApiKeyOption, ServerOption, TenantOption, connect
from berth.cli.endpoint_changes import (
    changes_pending,
    describe_next_step,
    read_after_change,
    still_unseen,
)
from berth.cli.endpoint_options import (
    DEFAULT_WAIT_TIMEOUT_S,
    EndpointArgument,
    EndpointOption,
    ProjectOption,
    TimeoutOption,
    WaitOption,
    endpoint_options_in_errors,
    pick_endpoint,
)
from berth.cli.endpoint_views import (
    print_created,
    print_endpoint,
    print_endpoint_list,
    state_text,
)
from berth.cli.output import (
    BerthGroup,
    CliError,
    Json,
    OutputFormat,
    OutputOption,
    confirm_on_terminal,
    print_json,
)
from berth.cli.waiting import (
    FAILED,
    LIVE,
    STOPPED,
    Goal,
    goal_for,
    max_generation,
    wait_for_goal,
)
from berth.client import Client
from berth.runtime.config import (
    DEFAULT_GENERATION_MAX_BATCH_SIZE,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_BATCH_WAIT_MS,
    DEFAULT_MAX_COMPLETION_TOKENS,
    LLAMA_CPP_DEFAULT_CONTEXT_LENGTH,
    MAX_BATCH_SIZE_LIMIT,
    MAX_BATCH_WAIT_MS_LIMIT,
    MAX_COMPLETION_TOKENS_LIMIT,
    MAX_CONTEXT_LENGTH,
    MIN_CONTEXT_LENGTH,
)
from berth.runtime.selection import RequestedRuntime
from berth.states import DesiredState, EndpointState

app = typer.Typer(
    cls=BerthGroup,
    rich_markup_mode="markdown",
    no_args_is_help=True,
    help="Create and manage endpoints and their API keys.",
)

ModelOption = Annotated[
    str,
    typer.Option(
        "--model-checkpoint",
        "--model_checkpoint",
        "--model",
        show_default=False,
        help="Model name or ID from the Model Hub (`berth model list`). "
        "Also accepted as --model_checkpoint or --model.",
    ),
]
DescriptionOption = Annotated[
    str | None,
    typer.Option("--description", show_default=False, help="Description of the endpoint."),
]
MaxBatchSizeOption = Annotated[
    int | None,
    typer.Option(
        "--max-batch-size",
        show_default=False,
        help="Text Embedding: maximum number of texts an instance encodes together, "
        f"1 to {MAX_BATCH_SIZE_LIMIT} (server default: {DEFAULT_MAX_BATCH_SIZE}). "
        "Text Generation on transformers: maximum number of queued requests generated "
        f"together (server default: {DEFAULT_GENERATION_MAX_BATCH_SIZE}).",
    ),
]


def _check_batch_wait_ms(value: float | None) -> float | None:
    # JSON has no NaN or infinity, so the request could not even be sent.
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(
            f"'{value}' is not a finite number; use 0 to {MAX_BATCH_WAIT_MS_LIMIT:g} ms"
        )
    return value


MaxBatchWaitOption = Annotated[
    float | None,
    typer.Option(
        "--max-batch-wait-ms",
        callback=_check_batch_wait_ms,
        show_default=False,
        help=f"Text Embedding: time in ms, 0 to {MAX_BATCH_WAIT_MS_LIMIT:g}, that a batch "
        "waits for more texts while the encoder is idle (server default: "
        f"{DEFAULT_MAX_BATCH_WAIT_MS:g}, encode at once).",
    ),
]
RuntimeOption = Annotated[
    RequestedRuntime | None,
    typer.Option(
        "--runtime",
        case_sensitive=False,
        show_default=False,
        help="Text Generation: library that runs the model. auto (the server default) "
        "uses vLLM when it is installed and a CUDA GPU is present, else transformers, "
        "and llama.cpp for GGUF files.",
    ),
]
MaxCompletionTokensOption = Annotated[
    int | None,
    typer.Option(
        "--max-completion-tokens",
        show_default=False,
        help="Text Generation: maximum number of tokens that one request may generate, "
        f"1 to {MAX_COMPLETION_TOKENS_LIMIT}, and the number that a request without "
        "max_tokens generates at most (server default: "
        f"{DEFAULT_MAX_COMPLETION_TOKENS}). The model's context length bounds both.",
    ),
]
ContextLengthOption = Annotated[
    int | None,
    typer.Option(
        "--context-length",
        show_default=False,
        help="Text Generation: context window in tokens, prompt and completion together, "
        f"{MIN_CONTEXT_LENGTH} to {MAX_CONTEXT_LENGTH} (server default: the model's trained "
        f"context length, at most {LLAMA_CPP_DEFAULT_CONTEXT_LENGTH} on llama.cpp). A value "
        "above the trained length makes the instances fail to load.",
    ),
]


class ResettableSetting(StrEnum):
    """A runtime setting that `update --reset-setting` resets, named as its option."""

    MAX_BATCH_SIZE = "max-batch-size"
    MAX_BATCH_WAIT_MS = "max-batch-wait-ms"
    RUNTIME = "runtime"
    MAX_COMPLETION_TOKENS = "max-completion-tokens"
    CONTEXT_LENGTH = "context-length"

    @property
    def api_name(self) -> str:
        return self.value.replace("-", "_")


ResetSettingOption = Annotated[
    list[ResettableSetting] | None,
    typer.Option(
        "--reset-setting",
        case_sensitive=False,
        show_default=False,
        help="Reset a runtime setting to the server default, so that the endpoint follows "
        "the default from then on: max-batch-size, max-batch-wait-ms, runtime, "
        "max-completion-tokens or context-length. Repeat the option to reset several.",
    ),
]


@app.command()
def create(
    name: Annotated[
        str,
        typer.Option(
            "--endpoint-name",
            "--endpoint_name",
            show_default=False,
            help="Name of the new endpoint, unique in its project. "
            "Also accepted as --endpoint_name.",
        ),
    ],
    model: ModelOption,
    project: Annotated[
        str, typer.Option("--project", "-p", help="Project name or ID for the endpoint.")
    ] = "default",
    instances: Annotated[int, typer.Option(help="Number of instances to run.")] = 1,
    description: DescriptionOption = None,
    share_with_all_tenants: Annotated[
        bool,
        typer.Option(
            "--share-with-all-tenants",
            help="Share the endpoint with every tenant instead of its own tenant only.",
        ),
    ] = False,
    max_batch_size: MaxBatchSizeOption = None,
    max_batch_wait_ms: MaxBatchWaitOption = None,
    runtime: RuntimeOption = None,
    max_completion_tokens: MaxCompletionTokensOption = None,
    context_length: ContextLengthOption = None,
    wait: WaitOption = False,
    timeout: TimeoutOption = DEFAULT_WAIT_TIMEOUT_S,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Create an endpoint and print its URL and first API key (FirstKey).

    The endpoint deploys in the background; --wait follows it until it is Live. With
    --wait and -o json, the JSON is the endpoint once Live, with its first_key.
    """
    with connect(server, api_key, tenant) as client, endpoint_options_in_errors():
        created = client.create_endpoint(
            project,
            name,
            model,
            instances=instances,
            description=description or "",
            share_with_all_tenants=share_with_all_tenants,
            max_batch_size=max_batch_size,
            max_batch_wait_ms=max_batch_wait_ms,
            runtime=runtime.value if runtime else None,
            max_completion_tokens=max_completion_tokens,
            context_length=context_length,
        )
        if wait:
            try:
                final = wait_for_goal(client, created, Goal(LIVE), timeout)
            except CliError as exc:
                # The endpoint exists: print it with its first key, which is shown only
                # here, before the error, so that a script keeps its ID and key.
                _print_created(created, output)
                raise CliError(
                    f"{str(exc).rstrip('.')}. The endpoint was created, and its details and "
                    "first key are on standard output."
                ) from exc
            created = {**final, "first_key": created["first_key"]}

    _print_created(created, output)


def _print_created(created: Json, output: OutputFormat) -> None:
    if output == OutputFormat.JSON:
        print_json(created)
    else:
        print_created(created)


@app.command()
def info(
    endpoint_argument: EndpointArgument = None,
    endpoint: EndpointOption = None,
    project: ProjectOption = None,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Show an endpoint: state, model, runtime settings, instances, URL and owner."""
    reference = pick_endpoint(endpoint_argument, endpoint)
    with connect(server, api_key, tenant) as client:
        data = client.get_endpoint(reference, project)
    if output == OutputFormat.JSON:
        print_json(data)
    else:
        print_endpoint(data)


@app.command("list")
def list_endpoints(
    project: Annotated[
        str | None,
        typer.Option("--project", "-p", show_default=False, help="List only this project."),
    ] = None,
    state: Annotated[
        EndpointState | None,
        typer.Option(
            case_sensitive=False, show_default=False, help="List only endpoints in this state."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Maximum number of endpoints.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Number of endpoints to skip.")] = 0,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """List the endpoints of the tenant and those shared with all tenants."""
    with connect(server, api_key, tenant) as client:
        page = client.list_endpoints(project, state, limit=limit, offset=offset)
        show_tenant = output == OutputFormat.TABLE and _lists_other_tenant(client, page)
    if output == OutputFormat.JSON:
        print_json(page)
    else:
        print_endpoint_list(page, show_tenant)


def _lists_other_tenant(client: Client, page: Json) -> bool:
    """Tell whether the page has an endpoint of another tenant than the active one."""
    # Only an endpoint shared with all tenants can be of another tenant, so the active
    # tenant is looked up only when the page has one.
    shared = [endpoint for endpoint in page["items"] if endpoint["share_with_all_tenants"]]
    if not shared:
        return False
    active_tenant = client.whoami()["tenant"]
    active_tenant_id = active_tenant["id"] if active_tenant else None
    return any(endpoint["tenant_id"] != active_tenant_id for endpoint in shared)


@app.command()
def update(
    endpoint_argument: EndpointArgument = None,
    endpoint: EndpointOption = None,
    project: ProjectOption = None,
    description: DescriptionOption = None,
    instances: Annotated[
        int | None, typer.Option(show_default=False, help="New number of instances.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model-checkpoint",
            "--model_checkpoint",
            "--model",
            show_default=False,
            help="New model name or ID, of the same ML App as the current model. "
            "Also accepted as --model_checkpoint or --model.",
        ),
    ] = None,
    share_with_all_tenants: Annotated[
        bool | None,
        typer.Option(
            "--share-with-all-tenants/--share-with-tenant",
            show_default=False,
            help="Share the endpoint with every tenant, or with its own tenant only.",
        ),
    ] = None,
    max_batch_size: MaxBatchSizeOption = None,
    max_batch_wait_ms: MaxBatchWaitOption = None,
    runtime: RuntimeOption = None,
    max_completion_tokens: MaxCompletionTokensOption = None,
    context_length: ContextLengthOption = None,
    reset_setting: ResetSettingOption = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Move to a checkpoint without a chat template even though the current "
            "checkpoint has one, which makes chat completion requests fail.",
        ),
    ] = False,
    wait: WaitOption = False,
    timeout: TimeoutOption = DEFAULT_WAIT_TIMEOUT_S,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Change an endpoint's description, instances, model, sharing or runtime settings.

    A new model or runtime setting replaces the instances, and running instances keep
    serving until their replacements are ready. A value equal to the current one
    replaces nothing. The command prints the endpoint once the server has begun to carry
    out the change, and what happens next. --wait follows the change until the endpoint
    is Live again, or Stopped if it was stopped, and prints it then.
    """
    reference = pick_endpoint(endpoint_argument, endpoint)
    changes = (
        description,
        instances,
        model,
        share_with_all_tenants,
        max_batch_size,
        max_batch_wait_ms,
        runtime,
        max_completion_tokens,
        context_length,
    )
    reset = sorted(set(reset_setting or ()), key=list(ResettableSetting).index)
    if all(change is None for change in changes) and not reset:
        raise typer.BadParameter(
            "nothing to update; pass --description, --instances, --model-checkpoint, "
            "--share-with-all-tenants, --max-batch-size, --max-batch-wait-ms, --runtime, "
            "--max-completion-tokens, --context-length or --reset-setting"
        )
    given = {
        ResettableSetting.MAX_BATCH_SIZE: max_batch_size,
        ResettableSetting.MAX_BATCH_WAIT_MS: max_batch_wait_ms,
        ResettableSetting.RUNTIME: runtime,
        ResettableSetting.MAX_COMPLETION_TOKENS: max_completion_tokens,
        ResettableSetting.CONTEXT_LENGTH: context_length,
    }
    for setting in reset:
        if given[setting] is not None:
            raise typer.BadParameter(
                f"--{setting.value} and --reset-setting {setting.value} contradict each "
                f"other; pass one of them"
            )
    with connect(server, api_key, tenant) as client, endpoint_options_in_errors():
        before = client.get_endpoint(reference, project)
        accepted = client.update_endpoint(
            reference,
            project,
            description=description,
            instances=instances,
            model=model,
            share_with_all_tenants=share_with_all_tenants,
            max_batch_size=max_batch_size,
            max_batch_wait_ms=max_batch_wait_ms,
            runtime=runtime.value if runtime else None,
            max_completion_tokens=max_completion_tokens,
            context_length=context_length,
            reset_settings=[setting.api_name for setting in reset],
            force=force or None,
        )
        if wait:
            goal = _goal_after_update(before, accepted)
            data = wait_for_goal(client, accepted, goal, timeout)
        else:
            data = read_after_change(client, before, accepted)

    if output == OutputFormat.JSON:
        print_json(data)
        return
    print_endpoint(data)
    if not wait:
        typer.echo()
        if still_unseen(before, data):
            typer.echo(
                "The server has not acted on the change yet; the state above is from before it."
            )
        _print_next_step(before, data, project)


def _goal_after_update(before: Json, after: Json) -> Goal:
    goal = goal_for(after)
    if goal.state != LIVE:
        return goal
    # The server raises the generation, and so replaces the instances, for a new model,
    # checkpoint or runtime setting. It does so too when a Failed endpoint's instances change.
    redeploys = after["generation"] > before["generation"]
    return Goal(
        LIVE,
        newer_than_generation=max_generation(before) if redeploys else None,
        failed_before_change=redeploys and before["state"] == FAILED,
    )


@app.command()
def stop(
    endpoint_argument: EndpointArgument = None,
    endpoint: EndpointOption = None,
    project: ProjectOption = None,
    wait: WaitOption = False,
    timeout: TimeoutOption = DEFAULT_WAIT_TIMEOUT_S,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Stop every instance of an endpoint and free their instance slots.

    The endpoint and its keys remain; `berth endpoint restart` starts it again.
    """
    reference = pick_endpoint(endpoint_argument, endpoint)
    with connect(server, api_key, tenant) as client:
        before = client.get_endpoint(reference, project)
        accepted = client.stop_endpoint(reference, project)
        if wait:
            data = wait_for_goal(client, accepted, goal_for(accepted), timeout)
        else:
            data = read_after_change(client, before, accepted)
    _print_action_result(before, data, "Stop", wait, output, project)


@app.command()
def restart(
    endpoint_argument: EndpointArgument = None,
    endpoint: EndpointOption = None,
    project: ProjectOption = None,
    wait: WaitOption = False,
    timeout: TimeoutOption = DEFAULT_WAIT_TIMEOUT_S,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Start a stopped or failed endpoint, or replace the instances of a running one.

    A running endpoint keeps serving until the new instances are ready. The command
    prints the state once the server has begun the restart, and what happens next.
    """
    reference = pick_endpoint(endpoint_argument, endpoint)
    with connect(server, api_key, tenant) as client:
        before = client.get_endpoint(reference, project)
        accepted = client.restart_endpoint(reference, project)
        if wait:
            goal = Goal(
                LIVE,
                newer_than_generation=max_generation(before),
                failed_before_change=before["state"] == FAILED,
            )
            data = wait_for_goal(client, accepted, goal, timeout)
        else:
            data = read_after_change(client, before, accepted)
    _print_action_result(before, data, "Restart", wait, output, project)


def _print_action_result(
    before: Json,
    data: Json,
    action: str,
    waited: bool,
    output: OutputFormat,
    project: str | None,
) -> None:
    name = data["name"]
    if output == OutputFormat.JSON:
        print_json(data)
    elif waited:
        typer.echo(f"Endpoint {name} is {state_text(data)}.")
    elif (
        action == "Stop"
        and before["desired_state"] == DesiredState.STOPPED
        and before["state"] == STOPPED
    ):
        typer.echo(f"Endpoint {name} is already Stopped.")
    elif still_unseen(before, data):
        # The reconciler had not acted within the wait, for example on a busy machine.
        typer.echo(
            f"{action} of endpoint {name} accepted; the server has not acted on it yet, so "
            f"it is still {state_text(data)}."
        )
        _print_next_step(before, data, project)
    else:
        typer.echo(f"{action} of endpoint {name} accepted; it is {state_text(data)}.")
        _print_next_step(before, data, project)


def _print_next_step(before: Json, after: Json, project: str | None) -> None:
    typer.echo(describe_next_step(before, after))
    if changes_pending(before, after):
        # The project the user named keeps the command unambiguous when several projects
        # hold an endpoint of this name.
        where = f" --project {after['project']['name']}" if project else ""
        typer.echo(f"Follow it with `berth endpoint info {after['name']}{where}`, or add --wait.")


@app.command()
def delete(
    endpoint_argument: EndpointArgument = None,
    endpoint: EndpointOption = None,
    project: ProjectOption = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Delete without asking for confirmation.")
    ] = False,
    output: OutputOption = OutputFormat.TABLE,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = None,
) -> None:
    """Delete an endpoint. Its keys stop working at once and its instances are ended.

    On a terminal, the command prompts for confirmation unless --yes is given. When stdin
    is not a terminal, as in scripts, it deletes without asking.
    """
    reference = pick_endpoint(endpoint_argument, endpoint)
    with connect(server, api_key, tenant) as client:
        confirm_on_terminal(
            f"Delete endpoint '{reference}'? Its API keys stop working at once.", yes
        )
        data = client.delete_endpoint(reference, project)
    if output == OutputFormat.JSON:
        print_json(data)
    else:
        typer.echo(f"Endpoint {data['name']} successfully marked for deletion.")


app.command("list-apikeys")(apikey.list_apikeys)
app.command("add-apikey")(apikey.add_apikey)
app.command("edit-apikey")(apikey.edit_apikey)
app.command("revoke-apikey")(apikey.revoke_apikey)
app.command("info-apikey")(apikey.info_apikey)
