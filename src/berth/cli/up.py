"""`berth up`: start the embedded server."""

import difflib
import errno
import fcntl
import logging
import math
import os
import signal
import socket
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Annotated, Any

import typer
import uvicorn
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from berth.cli.output import CliError, escape_control_characters
from berth.errors import plain_validation_message
from berth.httpserver import protocol_class
from berth.logs import configure_logging
from berth.settings import Settings, default_capacity, range_text

logger = logging.getLogger(__name__)

# The file in the home folder that a running server holds locked.
LOCK_FILE = "server.lock"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with command-line values on top.

    Raises typer.BadParameter, a usage error, when only command-line values are invalid,
    and CliError when an environment variable is, because that is no usage error.
    """
    values = {name: value for name, value in overrides.items() if value is not None}
    try:
        return Settings(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        errors = exc.errors()
    named = [(error, str(error["loc"][0]) if error["loc"] else "") for error in errors]
    if all(field in values for _error, field in named):
        raise typer.BadParameter("; ".join(_option_problem(error, field) for error, field in named))
    # One line for each problem, because each one names its own fix.
    lines = [
        _option_problem(error, field) if field in values else _environment_problem(error, field)
        for error, field in named
    ]
    raise CliError("\n".join(lines))


# BERTH_* variables that are not server settings: the CLI's and the SDK's connection.
_CLIENT_VARIABLES = frozenset({"BERTH_SERVER", "BERTH_API_KEY", "BERTH_TENANT"})
# The test suite's switches (BERTH_TEST_REQUIRE_POSTGRES and others).
_TEST_PREFIX = "BERTH_TEST_"


def unknown_variable_warnings(environ: Mapping[str, str]) -> list[str]:
    """Describe each BERTH_* variable in `environ` that Berth does not read.

    A misspelt setting such as BERTH_CAPCITY would otherwise be ignored without a word.
    """
    # The mark that the server puts on its instance processes.
    from berth.backends.local import OWNER_VARIABLE

    known = {f"BERTH_{name.upper()}" for name in Settings.model_fields}
    known |= _CLIENT_VARIABLES | {OWNER_VARIABLE}
    warnings = []
    for name in sorted(environ):
        if not name.startswith("BERTH_") or name in known or name.startswith(_TEST_PREFIX):
            continue
        # Compared without the prefix that every name shares.
        suffixes = sorted(known_name.removeprefix("BERTH_") for known_name in known)
        guess = difflib.get_close_matches(name.removeprefix("BERTH_"), suffixes, n=1, cutoff=0.7)
        hint = f"; did you mean BERTH_{guess[0]}?" if guess else ""
        warnings.append(f"{name} is not a Berth setting, so it has no effect{hint}")
    return warnings


# Settings whose values an error message must not repeat.
_SECRET_SETTINGS = frozenset({"admin_key", "secret_key", "database_url"})


def _option_problem(error: Any, field: str) -> str:
    """Describe a rejected command-line value, such as "--port=70000: must be …".

    A number option's problem ends with the range that the option accepts.
    """
    option = f"--{field.replace('_', '-')}"
    problem = _named_problem(error, option, field)
    info = Settings.model_fields.get(field)
    if info is None or info.annotation not in (int, int | None, float, float | None):
        return problem
    if error["type"] == "value_error" or not range_text(info):
        return problem
    return f"{problem}. Set {option} to {_accepted_values(info)}"


def _environment_problem(error: Any, field: str) -> str:
    """Describe a rejected environment variable, and add the fix unless the message has one."""
    if not field:
        return f"settings: {_message(error)}"
    variable = f"BERTH_{field.upper()}"
    problem = _named_problem(error, variable, field)
    # The messages of Berth's own checks (value_error) end with their fix.
    if error["type"] == "value_error":
        return problem
    return f"{problem}. {_environment_fix(variable, field)}"


def _environment_fix(variable: str, field: str) -> str:
    """Name the values that a setting accepts, and its default."""
    info = Settings.model_fields.get(field)
    if info is None:
        return f"Set {variable} to a valid value, or unset it to use the default"
    default = "the default"
    value = info.default
    if field in _MACHINE_DEFAULTS:
        default = f"the default ({_MACHINE_DEFAULTS[field]()})"
    elif info.default_factory is None and not isinstance(value, bool):
        if isinstance(value, int):
            default = f"the default ({value})"
        elif isinstance(value, float):
            default = f"the default ({value:g})"
    return f"Set {variable} to {_accepted_values(info)}, or unset it to use {default}"


def _accepted_values(info: FieldInfo) -> str:
    """Name the values that a setting accepts, such as "a whole number at least 1"."""
    annotation = info.annotation
    if annotation in (int, int | None):
        return f"a whole number {range_text(info)}".rstrip()
    if annotation in (float, float | None):
        return f"a number {range_text(info)}".rstrip()
    if annotation is bool:
        return "true or false"
    return "a valid value"


def _describe_default_capacity() -> str:
    return f"{default_capacity()} on this machine: two per CPU core, at least 4"


# Settings whose default depends on the machine, and a function that describes it.
_MACHINE_DEFAULTS = {"capacity": _describe_default_capacity}


def _named_problem(error: Any, name: str, field: str) -> str:
    value = error.get("input")
    if field in _SECRET_SETTINGS or not isinstance(value, str | int | float):
        return f"{name}: {_message(error)}"
    return f"{name}={value!r}: {_message(error)}"


def _message(error: Any) -> str:
    # Worded as the API words the errors of its fields: "must be …", not pydantic's
    # "Input should be …".
    return plain_validation_message(error)


def up(
    host: Annotated[
        str | None, typer.Option(help="address to listen on [default: 127.0.0.1]")
    ] = None,
    # Numbers are taken as text and checked by Settings, so that an error quotes the value.
    port: Annotated[
        str | None,
        typer.Option(metavar="INTEGER", help="port to listen on, 1 to 65535 [default: 8080]"),
    ] = None,
    home: Annotated[
        str | None, typer.Option(help="Berth home folder [default: $BERTH_HOME or ~/.berth]")
    ] = None,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="also deploy the built-in embedding model as endpoint 'demo' and "
            "print how to call it",
        ),
    ] = False,
    workers: Annotated[
        str | None,
        typer.Option(
            metavar="INTEGER",
            help="number of processes serving the API and the gateway; the reconciler runs "
            "once, in the supervising process [default: $BERTH_WORKERS or 1]",
        ),
    ] = None,
) -> None:
    """Start Berth: management API, gateway and reconciler in one server."""
    from berth.cli.profile import profile_path, save_profile_if_missing
    from berth.secrets import ServerSecretError
    from berth.server import create_app, prepare

    warnings = unknown_variable_warnings(os.environ)
    try:
        settings = load_settings(host=host, port=port, home=home, workers=workers)
    except (CliError, typer.BadParameter):
        # Logging needs the settings, so these go to stderr directly. A misspelt
        # variable often explains the error, as BERTH_CAPCITY leaves BERTH_CAPACITY unset.
        for warning in warnings:
            typer.echo(f"Warning: {escape_control_characters(warning)}", err=True)
        raise
    configure_logging(settings.log_json)
    for warning in warnings:
        logger.warning("%s", warning)
    # Take the home folder and listen before anything else, so that a second server or a
    # port in use stops the start before the admin is created, instances are touched or
    # the CLI profile points at this address.
    home_lock = _lock_home(settings)
    listener = _listen(settings)
    try:
        prepared = prepare(settings)
    except ServerSecretError as exc:
        # Not a usage error: the settings are valid, but they do not fit the database.
        raise CliError(exc.message) from None

    admin_key = prepared.bootstrap.generated_admin_key
    if admin_key:
        typer.secho(
            "\nCreated the organization admin. Its platform API key, shown once:", bold=True
        )
        typer.echo(f"\n    {admin_key}\n")
        try:
            saved = save_profile_if_missing(settings.local_url, admin_key)
        except OSError as exc:
            # The server runs without the profile; the key above is the way in.
            typer.echo(
                f"Could not save the CLI profile {profile_path()}: {exc.strerror or exc}. "
                "Keep the key above; to use it from the CLI, run: berth login --server "
                f"{settings.local_url}\n"
            )
        else:
            _report_saved_profile(saved, settings.local_url)

    if demo:
        key = admin_key or settings.admin_key
        threading.Thread(
            target=_deploy_demo, args=(settings.local_url, key), name="berth-demo", daemon=True
        ).start()

    if settings.workers > 1:
        from berth.workers import serve_with_workers

        serve_with_workers(settings, prepared.database, listener)
        home_lock.close()
        return

    config = uvicorn.Config(
        create_app(settings, prepared.database),
        host=settings.host,
        port=settings.port,
        http=protocol_class(
            settings.header_timeout_s,
            settings.max_header_bytes,
            settings.body_timeout_s,
            settings.cors_origins,
        ),
        log_config=None,
        access_log=False,
        # create_app applies it to the API and the UI only (see GatewayFirst).
        proxy_headers=False,
        # On SIGTERM uvicorn stops accepting connections and lets requests in flight
        # finish for this long, in whole seconds. The app's shutdown then ends the instances.
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout_s),
    )
    server = uvicorn.Server(config)
    # A closed terminal sends SIGHUP, whose default ends the process at once and cuts
    # the streams in flight. uvicorn handles only SIGINT and SIGTERM, so SIGHUP gets the
    # same graceful stop here.
    signal.signal(signal.SIGHUP, server.handle_exit)
    server.run(sockets=[listener])
    # Released only now: the instances have ended with the server's shutdown.
    home_lock.close()


def _lock_home(settings: Settings) -> IO[str]:
    """Hold the home folder's lock for the life of this process, or stop with a message.

    Two servers on one home would each end the other's instances as processes left by an
    earlier run of the same installation. The kernel releases the lock when the process
    ends, however it ends.
    """
    settings.home.mkdir(parents=True, exist_ok=True)
    path = settings.home / LOCK_FILE
    handle = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = handle.read().strip() or "another process"
        handle.close()
        # Not a usage error: the command line is fine, the folder is taken.
        raise CliError(
            f"another Berth server ({holder}) is using the home folder {settings.home}; "
            "stop it, or give this server its own home with --home or BERTH_HOME"
        ) from None
    handle.truncate(0)
    handle.write(f"pid {os.getpid()}, {settings.local_url}")
    handle.flush()
    return handle


def _report_saved_profile(saved: Path | None, local_url: str) -> None:
    from berth.cli.profile import profile_path

    if saved:
        typer.echo(f"Saved it to the CLI profile {saved} (mode 0600).\n")
    else:
        typer.echo(
            f"The CLI profile {profile_path()} exists and was left as it is. To use "
            f"this server from the CLI, run: berth login --server {local_url}\n"
        )


def _listen(settings: Settings) -> socket.socket:
    """Bind the server's listening socket, or stop with a message that names the address."""
    from berth.workers import bind_listener

    try:
        return bind_listener(settings.host, settings.port)
    except OSError as exc:
        where = f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
        if exc.errno == errno.EADDRINUSE:
            fix = "stop the program that uses it, or choose another port with --port or BERTH_PORT"
        elif exc.errno == errno.EADDRNOTAVAIL:
            fix = (
                "no network interface of this machine has that address; use one of its "
                "addresses with --host or BERTH_HOST, such as 127.0.0.1 or 0.0.0.0 (every "
                "interface)"
            )
        elif exc.errno == errno.EACCES:
            fix = "ports below 1024 need privileges; choose a port from 1024 up with --port"
        else:
            fix = "choose another address with --host and --port (BERTH_HOST, BERTH_PORT)"
        raise CliError(f"{where}; {fix}") from None


def _deploy_demo(server: str, api_key: str | None) -> None:
    from berth.cli.demo import deploy_demo

    try:
        deploy_demo(server, api_key)
    except Exception:
        logger.exception("deploying the demo endpoint failed")
