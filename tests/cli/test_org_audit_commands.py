"""`berth org` and `berth audit` commands against a real server."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from berth.cli import audit
from berth.cli.audit import parse_time
from berth.client import Client
from tests.cli.conftest import RunCli, new_user, parse_json, unboxed, unique


@pytest.fixture
def sharing_off_after(client: Client) -> Iterator[None]:
    """Turn sharing with all tenants off after the test, for the tests that follow."""
    yield
    client.set_sharing(False, unshare_existing=True)


def test_org_show(cli: RunCli) -> None:
    table = cli("org", "show")
    as_json = parse_json(cli("org", "show", "-o", "json"))

    assert table.stdout == "Sharing with all tenants  off\n"
    assert as_json == {"share_with_all_tenants": False}


def test_org_set_sharing_lists_shared(cli: RunCli, client: Client, sharing_off_after: None) -> None:
    turned_on = cli("org", "set-sharing", "--on")
    endpoint = client.create_endpoint(
        "default", unique("wide"), "echo", share_with_all_tenants=True
    )
    # Stopped at once: this test needs the record, not a running instance.
    client.stop_endpoint(endpoint["id"])
    model = client.register_model(unique("wide-model"), "echo", sharing="all_tenants")

    turned_off = cli("org", "set-sharing", "--off")
    unshared = cli("org", "set-sharing", "--off", "--unshare-existing")

    assert turned_on.stdout == "Sharing with all tenants is on.\n"
    assert turned_off.exit_code == 0, turned_off.output
    assert "stay shared with all tenants" in turned_off.stdout
    assert "Endpoints still shared with all tenants:" in turned_off.stdout
    assert f"  {endpoint['name']}  ({endpoint['id']})" in turned_off.stdout
    assert f"  {model['name']}  ({model['id']})" in turned_off.stdout
    assert "--unshare-existing` shares them with their own tenant only" in turned_off.stdout
    assert "were unshared" in unshared.stdout
    assert "Endpoints, now shared with their own tenant only:" in unshared.stdout
    assert "Models, now shared with their own tenant only:" in unshared.stdout
    assert client.get_endpoint(endpoint["id"])["share_with_all_tenants"] is False
    assert client.get_model(model["id"])["sharing"] == "tenant"
    client.delete_model(model["id"])


def test_org_set_sharing_usage_errors(cli: RunCli, client: Client) -> None:
    neither = cli("org", "set-sharing")
    on_and_unshare = cli("org", "set-sharing", "--on", "--unshare-existing")
    member_key = new_user(client, unique("vic"))
    not_admin = cli("org", "set-sharing", "--on", BERTH_API_KEY=member_key)

    assert neither.exit_code == 2
    assert "pass --on or --off" in unboxed(neither.output)
    assert on_and_unshare.exit_code == 2
    assert "--unshare-existing works only with --off" in unboxed(on_and_unshare.output)
    assert not_admin.exit_code == 1
    assert not_admin.stderr == "Error: only an OrgAdmin may change organization settings\n"


def test_audit_list_filters(cli: RunCli, client: Client) -> None:
    tenant, name = unique("audited"), unique("wes")
    cli("tenant", "create", tenant)
    client.create_user(name)
    cli("tenant", "add-member", tenant, name)

    everything = parse_json(cli("audit", "list", "--tenant", tenant, "-o", "json"))
    memberships = parse_json(
        cli("audit", "list", "--tenant", tenant, "--action", "membership.", "-o", "json")
    )
    by_me = parse_json(cli("audit", "list", "--tenant", tenant, "--actor", "me", "-o", "json"))
    recent = parse_json(cli("audit", "list", "--tenant", tenant, "--since", "10m", "-o", "json"))
    old = parse_json(cli("audit", "list", "--tenant", tenant, "--until", "1h", "-o", "json"))
    user_id = client.get_user(name)["id"]
    by_resource = parse_json(
        cli("audit", "list", "--tenant", "all", "--resource-id", user_id, "-o", "json")
    )

    assert [row["action"] for row in everything["items"]] == ["membership.added", "tenant.created"]
    assert [row["resource_name"] for row in memberships["items"]] == [name]
    assert by_me["total"] == 2
    assert recent["total"] == 2
    assert old["total"] == 0
    assert [row["action"] for row in by_resource["items"]] == ["membership.added", "user.created"]


def test_audit_list_table(cli: RunCli) -> None:
    tenant = unique("tabled")
    cli("tenant", "create", tenant)
    cli("tenant", "rename", tenant, f"{tenant}-renamed")

    result = cli("audit", "list", "--tenant", f"{tenant}-renamed")
    paged = cli("audit", "list", "--tenant", f"{tenant}-renamed", "--limit", "1")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["Time", "Actor", "Action", "and", "details", "Resource"]
    assert lines[2].split()[2:] == ["admin", "tenant.renamed", f"{tenant}-renamed"]
    assert lines[3].split() == [f"old_name={tenant}"]
    assert all(len(line) <= 80 for line in lines)
    assert "Showing audit entries 1 to 1 of 2; use --offset 1 for more." in paged.stdout


def test_audit_list_all_tenants_needs_org_admin(cli: RunCli, client: Client) -> None:
    tenant = unique("plain")
    client.create_tenant(tenant)
    member_key = new_user(client, unique("xan"), tenant)

    result = cli("audit", "list", "--tenant", "all", BERTH_API_KEY=member_key)
    own = cli("audit", "list", "-o", "json", BERTH_API_KEY=member_key)

    assert result.exit_code == 1
    assert result.stderr.startswith("Error: only an OrgAdmin may list the audit entries")
    assert own.exit_code == 0, own.output


def test_audit_list_invalid_time(cli: RunCli) -> None:
    result = cli("audit", "list", "--since", "yesterday")

    assert result.exit_code == 2
    assert "invalid time 'yesterday'" in unboxed(result.output)


def test_parse_time_durations() -> None:
    now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

    assert parse_time("90s", now) == now - timedelta(seconds=90)
    assert parse_time("15m", now) == now - timedelta(minutes=15)
    assert parse_time("2h", now) == now - timedelta(hours=2)
    assert parse_time(" 7d ", now) == now - timedelta(days=7)
    assert parse_time("1w", now) == now - timedelta(weeks=1)


def test_parse_time_dates() -> None:
    local_noon = datetime(2025, 3, 1, 12, 0).astimezone()

    assert parse_time("2025-03-01 12:00") == local_noon
    assert parse_time("2025-03-01T12:00") == local_noon
    assert parse_time("2025-03-01") == datetime(2025, 3, 1).astimezone()
    assert parse_time("2025-03-01T12:00:00+00:00") == datetime(2025, 3, 1, 12, tzinfo=UTC)
    assert parse_time("2025-03-01T12:00:00Z").utcoffset() is not None


@pytest.mark.parametrize("text", ["yesterday", "10", "5 years", "-2h", ""])
def test_parse_time_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="invalid time"):
        parse_time(text)


def test_audit_table_shows_details_as_json() -> None:
    entry = {
        "created_at": "2026-12-05T10:00:00Z",
        "actor": {"name": "admin"},
        "action": "endpoint.updated",
        "details": {"runtime_settings": {"runtime": "transformers"}, "instances": 2},
        "resource_name": "a-rather-long-endpoint-name-for-the-table",
        "resource_id": "x",
    }
    wide = Console(width=160, record=True)
    narrow = Console(width=80, record=True)

    wide.print(audit._entry_table([entry]))
    narrow.print(audit._entry_table([entry]))

    text = wide.export_text()
    assert 'runtime_settings={"runtime": "transformers"}' in text
    assert "instances=2" in text
    header = narrow.export_text().splitlines()[0]
    assert header.split() == ["Time", "Actor", "Action", "and", "details", "Resource"]
