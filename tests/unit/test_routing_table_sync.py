"""The gateway's routing table reads only what changed since its last refresh."""

import asyncio

from sqlalchemy import event

from berth.auth import authenticate
from berth.db.engine import Database
from berth.db.models import Endpoint
from berth.gateway.table import RoutingTable
from berth.service import endpoints, tenants
from tests.unit.conftest import UNIT_ADMIN_KEY

LIMITS = endpoints.Limits(capacity=4, max_instances_per_endpoint=4)


def _create_endpoint(database: Database, name: str) -> str:
    with database.session() as session:
        principal = authenticate(session, UNIT_ADMIN_KEY, None)
        endpoint, _key = endpoints.create_endpoint(
            session,
            principal,
            LIMITS,
            project_ref="default",
            name=name,
            model_ref="echo",
            instances=1,
        )
        return endpoint.id


def _record_selects(database: Database) -> list[str]:
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(database.engine, "before_cursor_execute", record)
    return statements


def test_refresh_without_changes_reads_only_the_counter(database: Database) -> None:
    endpoint_id = _create_endpoint(database, "chat")

    async def scenario() -> list[str]:
        table = RoutingTable(database, sync_interval_s=0.2)
        await table.refresh()
        assert endpoint_id in table.routes
        statements = _record_selects(database)
        await table.refresh()
        assert endpoint_id in table.routes
        return statements

    statements = asyncio.run(scenario())

    assert len(statements) == 1, statements
    assert "counters" in statements[0]


def test_refresh_after_a_change_reads_the_changed_rows(database: Database) -> None:
    async def scenario() -> tuple[RoutingTable, str]:
        table = RoutingTable(database, sync_interval_s=0.2)
        await table.refresh()
        endpoint_id = await asyncio.to_thread(_create_endpoint, database, "later")
        await table.refresh()
        return table, endpoint_id

    table, endpoint_id = asyncio.run(scenario())

    assert endpoint_id in table.routes
    assert any(entry.endpoint_id == endpoint_id for entry in table.keys.values())


def test_tenant_disable_reaches_the_table(database: Database) -> None:
    endpoint_id = _create_endpoint(database, "chat")

    def change_tenant(name: str | None, disabled: bool | None) -> None:
        with database.session() as session:
            admin = authenticate(session, UNIT_ADMIN_KEY, None)
            endpoint = session.get(Endpoint, endpoint_id)
            assert endpoint is not None
            tenant = endpoint.tenant
            tenants.update_tenant(session, admin, tenant, name, disabled)

    async def scenario() -> list[tuple[str, bool]]:
        table = RoutingTable(database, sync_interval_s=0.2)
        await table.refresh()
        seen = []
        for name, disabled in ((None, True), ("renamed", None), (None, False)):
            await asyncio.to_thread(change_tenant, name, disabled)
            await table.refresh()
            route = table.routes[endpoint_id]
            seen.append((route.tenant_name, route.tenant_disabled))
        return seen

    seen = asyncio.run(scenario())

    assert seen == [("default", True), ("renamed", True), ("renamed", False)]
