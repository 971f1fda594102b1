"""The embedded server: management API, gateway and reconciler.

With one worker (the default) everything runs in one process. With `--workers N` each
of N worker processes serves the API and the gateway from `create_app(...,
run_reconciler=False)`, and the supervising process runs the reconciler and owns the
instances (see `berth.workers`).
"""

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import inspect, select
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from berth.api.app import API_PREFIX, create_api
from berth.backends.local import LocalBackend, RuntimeOptions
from berth.bootstrap import BootstrapResult, bootstrap
from berth.db.engine import Database, migrate
from berth.db.models import EndpointKey
from berth.gateway.errors import openai_error
from berth.gateway.proxy import PATH_PREFIX, Gateway
from berth.gateway.table import RoutingTable
from berth.reconciler.loop import Placement, Reconciler, ReconcilerThread, Timing
from berth.reconciler.probes import Prober
from berth.secrets import KeyVault, ServerSecretError
from berth.service.keys import set_vault
from berth.settings import Settings
from berth.shutdown_cutoff import ShutdownCutoff
from berth.ui import UI_PREFIX, create_ui

logger = logging.getLogger(__name__)

# Time that instances get to exit after SIGTERM when the whole server stops. They have
# no requests left by then, because the HTTP server drained them first.
BACKEND_SHUTDOWN_GRACE_S = 10.0
# Time beyond an instance's own shutdown timeout before the reconciler kills it.
EXIT_MARGIN_S = 2.0


@dataclass
class Prepared:
    database: Database
    bootstrap: BootstrapResult


def prepare(settings: Settings) -> Prepared:
    """Create the home folder, migrate the schema and run the first-start set-up.

    Raises ServerSecretError, before the schema or any row changes, when the server
    secret cannot decrypt the endpoint keys that the database stores.
    """
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.home.chmod(0o700)
    database = Database(settings.resolved_database_url)
    set_vault(open_vault(settings, database))
    migrate(database.engine)
    with database.session() as session:
        result = bootstrap(session, settings.admin_key)
    return Prepared(database, result)


def open_vault(settings: Settings, database: Database) -> KeyVault:
    """Load the server secret and check that it decrypts the newest stored endpoint key.

    Berth encrypts every key under the one server secret, so one key shows whether the
    secret is the right one. A missing key file is created only while no key is stored.
    """
    sample = _newest_stored_key(database)
    configured = settings.secret_key_text
    if sample is not None and configured is None and not settings.secret_file.exists():
        raise ServerSecretError(
            "the database stores encrypted endpoint keys, but the server secret that "
            f"encrypted them is missing: BERTH_SECRET_KEY is unset and {settings.secret_file} "
            "does not exist. Put that file back, or set BERTH_SECRET_KEY to the key that was "
            "in use when the endpoint keys were created, then start Berth again. Nothing "
            "was changed"
        )
    vault = KeyVault.from_file(settings.secret_file, configured)
    if sample is None:
        return vault
    try:
        vault.decrypt(sample)
    except ServerSecretError:
        if configured:
            source = "BERTH_SECRET_KEY"
            fix = (
                "Set BERTH_SECRET_KEY to the key that was in use when the endpoint keys were "
                f"created, or unset it if that was the key in {settings.secret_file}"
            )
        else:
            source = f"the key in {settings.secret_file}"
            fix = (
                "Put back the file that was in use when the endpoint keys were created, or "
                "set BERTH_SECRET_KEY to the key it contained"
            )
        raise ServerSecretError(
            f"the endpoint keys stored in the database cannot be decrypted with {source}, "
            f"which differs from the server secret that encrypted them. {fix}, then start "
            "Berth again. Nothing was changed"
        ) from None
    return vault


def _newest_stored_key(database: Database) -> str | None:
    """Return the encrypted copy of the newest endpoint key, or None when none is stored.

    Reads only columns of the first schema revision, because it runs before the migration.
    """
    if not inspect(database.engine).has_table(EndpointKey.__tablename__):
        return None
    with database.engine.connect() as connection:
        return connection.scalar(
            select(EndpointKey.key_encrypted).order_by(EndpointKey.created_at.desc()).limit(1)
        )


def create_backend(settings: Settings) -> LocalBackend:
    options = RuntimeOptions(
        shutdown_timeout_s=settings.drain_timeout_s,
        stall_timeout_s=settings.resolved_stall_timeout_s,
    )
    return LocalBackend(settings.logs_dir, options=options, owner=str(settings.home))


def create_reconciler(
    settings: Settings,
    database: Database,
    backend: LocalBackend,
    on_change: Callable[[], None] | None,
) -> ReconcilerThread:
    """Build the reconciler on its own thread; instance exits wake it at once."""
    timing = Timing(
        interval_s=settings.reconcile_interval_s,
        health_interval_s=settings.health_interval_s,
        unhealthy_after=settings.unhealthy_after,
        start_timeout_s=settings.instance_start_timeout_s,
        drain_grace_s=settings.drain_grace_s,
        drain_timeout_s=settings.drain_timeout_s + EXIT_MARGIN_S,
        delete_drain_timeout_s=settings.delete_drain_timeout_s,
    )
    reconciler = Reconciler(
        database,
        backend,
        Placement(settings.capacity, settings.models_dir),
        timing,
        on_change=on_change,
        prober=Prober(timeout_s=settings.health_timeout_s),
    )
    thread = ReconcilerThread(reconciler)
    backend.set_exit_listener(thread.wake)
    return thread


def create_app(
    settings: Settings,
    database: Database,
    *,
    run_reconciler: bool = True,
    worker_label: str | None = None,
    wake_reconciler: Callable[[], None] | None = None,
) -> ShutdownCutoff:
    """Assemble the API and the gateway; with `run_reconciler`, also the reconciler and
    the instances, which then live as long as this app."""
    table = RoutingTable(database, settings.sync_interval_s)
    gateway = Gateway(
        table,
        settings.max_request_bytes,
        settings.upstream_timeout_s,
        no_instance_wait_s=settings.no_instance_wait_s,
        worker_label=worker_label,
        cors_origins=settings.cors_origins,
    )
    backend: LocalBackend | None = None
    reconciler_thread: ReconcilerThread | None = None
    if run_reconciler:
        backend = create_backend(settings)
        reconciler_thread = create_reconciler(
            settings, database, backend, on_change=table.refresh_now_threadsafe
        )
        wake_reconciler = reconciler_thread.wake

    def on_change() -> None:
        table.refresh_now_threadsafe()
        if wake_reconciler is not None:
            wake_reconciler()

    api = create_api(settings.max_api_request_bytes, web_ui_url=f"{UI_PREFIX}/")
    api.state.settings = settings
    api.state.database = database
    api.state.on_change = on_change

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if reconciler_thread is not None:
            # Recovery marks the previous run's instances as exited; load the routes
            # only after it, or the gateway would route to their stale addresses.
            await asyncio.to_thread(reconciler_thread.start)
        table.bind_loop(asyncio.get_running_loop())
        await table.refresh()
        stopping = asyncio.Event()
        sync_task = asyncio.create_task(table.run(stopping), name="berth-gateway-sync")
        logger.info("Berth is serving on %s", settings.local_url)
        if settings.public_url:
            logger.info("endpoint URLs start with BERTH_PUBLIC_URL, %s", settings.public_url)
        try:
            yield
        finally:
            # uvicorn runs this after requests in flight have finished (or after its
            # graceful-shutdown timeout), so ending the instances now cuts nothing.
            stopping.set()
            table.refresh_soon()
            await sync_task
            if reconciler_thread is not None and backend is not None:
                logger.info("stopping: ending instances")
                await asyncio.to_thread(reconciler_thread.stop)
                await asyncio.to_thread(backend.shutdown, BACKEND_SHUTDOWN_GRACE_S)
            await gateway.close()
            database.dispose()

    async def root(_request: Request) -> Response:
        return RedirectResponse(f"{UI_PREFIX}/")

    # Browsers request /favicon.ico on pages without an icon link, such as the API docs.
    async def favicon(_request: Request) -> Response:
        return RedirectResponse(f"{UI_PREFIX}/static/icon.svg", status_code=301)

    app = Starlette(
        routes=[
            Route("/", root),
            Route("/favicon.ico", favicon),
            Mount(API_PREFIX, app=api),
            Mount(UI_PREFIX, app=create_ui(settings, database)),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _unexpected_error},
        lifespan=lifespan,
    )
    # The API and the UI record the caller's address in the audit log, so behind a
    # reverse proxy they take it from X-Forwarded-For, from the addresses that uvicorn
    # trusts by default. The gateway never reads it and skips the header parsing.
    # uvicorn types its middleware with its own ASGI types, which Starlette's do not match.
    forwarded = ProxyHeadersMiddleware(
        cast(Any, app), trusted_hosts=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
    )
    return ShutdownCutoff(
        GatewayFirst(gateway, cast(ASGIApp, forwarded)),
        settings.shutdown_timeout_s,
        gateway.response_headers,
    )


class GatewayFirst:
    """Send requests under /endpoints/ straight to the gateway and the rest to `app`.

    Prediction requests skip Starlette's routing and middleware, which cost as much
    CPU time per request as forwarding does. The servers run it without uvicorn's
    proxy-headers middleware, which `app` carries instead.
    """

    def __init__(self, gateway: Gateway, app: ASGIApp) -> None:
        self.gateway = gateway
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PATH_PREFIX):
            await self.gateway(scope, receive, send)
        else:
            await self.app(scope, receive, send)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Return routing errors outside the API (unknown paths) in the gateway's error shape."""
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    headers = dict(exc.headers) if exc.headers else None
    message = str(exc.detail)
    if exc.status_code == 404:
        # A client configured with a URL that has a path, such as --server .../berth,
        # ends up here.
        message = (
            f"no route {request.url.path}: Berth serves its management API under "
            f"{API_PREFIX}/, the web UI under {UI_PREFIX}/ and endpoints under "
            f"{PATH_PREFIX}, so the server URL of the CLI or the SDK is the base URL "
            "that these paths follow"
        )
    return openai_error(exc.status_code, message, code=code, headers=headers)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    logger.error("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
    return openai_error(
        500,
        "internal server error; the server log has the details",
        code="internal_error",
        error_type="server_error",
    )
