"""The embedded server: management API, gateway and reconciler in one process."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route

from berth.api.app import API_PREFIX, create_api
from berth.backends.local import LocalBackend
from berth.bootstrap import BootstrapResult, bootstrap
from berth.db.engine import Database, migrate
from berth.gateway.proxy import Gateway
from berth.gateway.table import RoutingTable
from berth.reconciler.loop import Placement, Reconciler, ReconcilerThread, Timing
from berth.secrets import KeyVault
from berth.service.keys import set_vault
from berth.settings import Settings
from berth.ui import UI_PREFIX, create_ui

logger = logging.getLogger(__name__)

BACKEND_SHUTDOWN_GRACE_S = 10.0


@dataclass
class Prepared:
    database: Database
    bootstrap: BootstrapResult


def prepare(settings: Settings) -> Prepared:
    """Create the home folder, migrate the schema and run the first-start set-up."""
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.home.chmod(0o700)
    database = Database(settings.resolved_database_url)
    migrate(database.engine)
    set_vault(KeyVault.from_file(settings.secret_file))
    with database.session() as session:
        result = bootstrap(session, settings.admin_key)
    return Prepared(database, result)


def create_app(settings: Settings, database: Database) -> Starlette:
    table = RoutingTable(database, settings.sync_interval_s)
    gateway = Gateway(table, settings.max_request_bytes, settings.upstream_timeout_s)
    backend = LocalBackend(settings.logs_dir)
    timing = Timing(
        interval_s=settings.reconcile_interval_s,
        start_timeout_s=settings.instance_start_timeout_s,
    )
    reconciler = Reconciler(
        database,
        backend,
        Placement(settings.capacity, settings.models_dir),
        timing,
        on_change=table.refresh_now_threadsafe,
    )
    reconciler_thread = ReconcilerThread(reconciler)

    def on_change() -> None:
        table.refresh_now_threadsafe()
        reconciler_thread.wake()

    api = create_api()
    api.state.settings = settings
    api.state.database = database
    api.state.on_change = on_change

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        table.bind_loop(asyncio.get_running_loop())
        await table.refresh()
        stopping = asyncio.Event()
        sync_task = asyncio.create_task(table.run(stopping), name="berth-gateway-sync")
        reconciler_thread.start()
        logger.info("Berth is serving on %s", settings.public_url)
        try:
            yield
        finally:
            logger.info("stopping: ending instances")
            stopping.set()
            table.refresh_soon()
            await sync_task
            await asyncio.to_thread(reconciler_thread.stop)
            await asyncio.to_thread(backend.shutdown, BACKEND_SHUTDOWN_GRACE_S)
            await gateway.close()
            database.dispose()

    async def root(_request: Request) -> Response:
        return RedirectResponse(f"{UI_PREFIX}/")

    return Starlette(
        routes=[
            Route("/", root),
            Route("/endpoints/{endpoint_id}/{path:path}", gateway.handle, methods=["GET", "POST"]),
            Mount(API_PREFIX, app=api),
            Mount(UI_PREFIX, app=create_ui(settings, database)),
        ],
        lifespan=lifespan,
    )
