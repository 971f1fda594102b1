"""Options shared by the `berth endpoint` commands."""

import math
from contextlib import AbstractContextManager
from typing import Annotated

import typer

from berth.cli.output import cli_names_in_errors

DEFAULT_WAIT_TIMEOUT_S = 600.0
# The CLI option of each field of the endpoint API that API error messages name.
ENDPOINT_OPTIONS = {
    "name": "--endpoint-name",
    "description": "--description",
    "instances": "--instances",
    "runtime_settings.max_batch_size": "--max-batch-size",
    "runtime_settings.max_batch_wait_ms": "--max-batch-wait-ms",
    "runtime_settings.runtime": "--runtime",
    "runtime_settings.max_completion_tokens": "--max-completion-tokens",
    "runtime_settings.context_length": "--context-length",
    "force": "--force",
}


def endpoint_options_in_errors() -> AbstractContextManager[None]:
    """Name the CLI options in place of the API's endpoint fields in API errors."""
    return cli_names_in_errors(ENDPOINT_OPTIONS)


EndpointArgument = Annotated[
    str | None,
    typer.Argument(
        metavar="ENDPOINT",
        show_default=False,
        help="Endpoint name or ID, as an alternative to --endpoint.",
    ),
]
EndpointOption = Annotated[
    str | None,
    typer.Option("--endpoint", "-e", show_default=False, help="Endpoint name or ID."),
]
ProjectOption = Annotated[
    str | None,
    typer.Option(
        "--project",
        "-p",
        show_default=False,
        help="Project name or ID of the endpoint. Needed only when several projects "
        "have an endpoint of that name.",
    ),
]
WaitOption = Annotated[
    bool,
    typer.Option(
        "--wait",
        help="Wait until the endpoint reaches the requested state, showing its progress. "
        "Exits with status 1 if it fails, if a wait for Live finds it Pending for free "
        "instance slots or finds that a new instance cannot start because the model's "
        "files are missing or changed after import, or if the timeout passes.",
    ),
]


def check_wait_timeout(value: float) -> float:
    """Reject a negative, NaN or infinite --timeout.

    A callback in place of `min=0`, whose range error would be the only message for NaN.
    """
    if not math.isfinite(value) or value < 0:
        raise typer.BadParameter(
            f"'{value:g}' is invalid; use a finite number of seconds, 0 or more"
        )
    return value


TimeoutOption = Annotated[
    float,
    typer.Option(
        "--timeout",
        callback=check_wait_timeout,
        help="Maximum time to wait with --wait, in seconds, 0 or more.",
    ),
]


def _check_apikey(value: str) -> str:
    if not value.strip():
        raise typer.BadParameter(
            "must not be empty; give the key's ID (as list-apikeys shows it) or the key"
        )
    return value


ApiKeyIdOption = Annotated[
    str,
    typer.Option(
        "--apikey",
        show_default=False,
        callback=_check_apikey,
        help="ID of the endpoint API key, or the key itself. The start of the ID (at least "
        "4 characters) is enough when no other key of the endpoint shares it, such as the "
        "8 characters that list-apikeys shows.",
    ),
]


def pick_endpoint(argument: str | None, option: str | None) -> str:
    """Return the endpoint named by the positional argument or by --endpoint.

    Raises a usage error, exit status 2, when neither is given or the two differ.
    """
    if argument and option and argument != option:
        raise typer.BadParameter(
            f"'{option}' differs from the endpoint argument '{argument}'; give the endpoint once",
            param_hint="'--endpoint'",
        )
    endpoint = argument or option
    if not endpoint:
        raise typer.BadParameter("an endpoint name or ID is required", param_hint="'--endpoint'")
    return endpoint
