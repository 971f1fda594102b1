"""`berth endpoint` lifecycle commands against a real server."""

import json
import re
import time
from collections.abc import Iterator

import httpx
import pytest

from berth.cli import endpoint_views, output
from berth.client import Client
from tests.cli.conftest import (
    WAIT_TIMEOUT_S,
    RunCli,
    create_endpoint,
    new_user,
    parse_json,
    unboxed,
    unique,
)


def test_create_underscore_flags_waits_until_live(cli: RunCli, client: Client) -> None:
    result = cli(
        "endpoint",
        "create",
        "--project",
        "default",
        "--endpoint_name",
        "underscore-flags",
        "--model-checkpoint",
        "echo",
        "--instances",
        "1",
        "--wait",
        "--timeout",
        WAIT_TIMEOUT_S,
    )

    assert result.exit_code == 0, result.output
    endpoint = client.get_endpoint("underscore-flags")
    assert endpoint["state"] == "Live"
    first_key = next(key for key in client.list_keys("underscore-flags") if key["is_first"])
    assert endpoint["id"] in result.stdout
    assert endpoint["url"] in result.stdout
    assert "Live" in result.stdout
    assert f"FirstKey  {first_key['key']}" in result.stdout
    assert f"{endpoint['openai_base_url']}/chat/completions" in result.stdout
    assert f"set its base URL to {endpoint['openai_base_url']}" in result.stdout
    assert "Waiting for endpoint 'underscore-flags' to be Live" in result.stderr
    assert "Live, 1 of 1 instances ready" in result.stderr


def test_create_dashed_flags_prints_json(cli: RunCli, client: Client) -> None:
    result = cli(
        "endpoint",
        "create",
        "--endpoint-name",
        "dashed-style",
        "--model_checkpoint",
        "echo",
        "--description",
        "created without waiting",
        "-o",
        "json",
    )

    created = parse_json(result)
    assert created["name"] == "dashed-style"
    assert created["description"] == "created without waiting"
    assert created["project"]["name"] == "default"
    assert created["first_key"].startswith("berth_ek_")
    assert created["id"] == client.get_endpoint("dashed-style")["id"]


def test_create_wait_json_has_first_key(cli: RunCli) -> None:
    endpoint = create_endpoint(cli, "wait-json")

    assert endpoint["state"] == "Live"
    assert endpoint["ready_instances"] == 1
    assert endpoint["first_key"].startswith("berth_ek_")


def test_create_wait_timeout_exits_1(cli: RunCli) -> None:
    # An echo instance needs far longer than one poll to start, so a zero timeout ends
    # the wait before the endpoint can be Live.
    result = cli(
        "endpoint",
        "create",
        "--endpoint-name",
        "no-patience",
        "--model",
        "echo",
        "--wait",
        "--timeout",
        "0",
        "-o",
        "json",
    )

    assert result.exit_code == 1
    assert "Error: timed out after 0 s waiting for endpoint 'no-patience' to be Live" in (
        result.stderr
    )
    # The endpoint exists, so its ID and first key still reach standard output.
    assert "The endpoint was created, and its details and first key are on standard output." in (
        unboxed(result.stderr)
    )
    created = json.loads(result.stdout)
    assert created["name"] == "no-patience"
    assert created["first_key"].startswith("berth_ek_")


def test_info_table_and_json(cli: RunCli, client: Client) -> None:
    create_endpoint(cli, "info-target")

    by_option = cli("endpoint", "info", "--project", "default", "--endpoint", "info-target")
    by_argument = cli("endpoint", "info", "info-target")
    as_json = cli("endpoint", "info", "info-target", "-o", "json")

    assert by_option.exit_code == 0, by_option.output
    assert by_option.stdout == by_argument.stdout
    assert "Name             info-target" in by_option.stdout
    assert "Instances        1 of 1 ready" in by_option.stdout
    assert "Ready" in by_option.stdout
    assert parse_json(as_json) == client.get_endpoint("info-target")


def test_info_json_has_instance_addresses(cli: RunCli, client: Client) -> None:
    create_endpoint(cli, "addressed")
    # Every user who can see an endpoint may see its details, a plain member too.
    member_key = new_user(client, unique("member"), "default")

    as_admin = parse_json(cli("endpoint", "info", "addressed", "-o", "json"))
    as_member = parse_json(
        cli("endpoint", "info", "addressed", "-o", "json", BERTH_API_KEY=member_key)
    )

    (instance,) = as_admin["instance_list"]
    assert re.fullmatch(r"127\.0\.0\.1:\d+", instance["address"]), instance
    health = httpx.get(f"http://{instance['address']}/health", timeout=10)
    assert health.status_code == 200
    assert as_member["instance_list"][0]["address"] == instance["address"]


def test_info_by_id(cli: RunCli) -> None:
    endpoint = create_endpoint(cli, "info-by-id")

    result = cli("endpoint", "info", endpoint["id"], "-o", "json")

    assert parse_json(result)["name"] == "info-by-id"


def test_list_table_and_json(cli: RunCli, client: Client) -> None:
    create_endpoint(cli, "listed")

    table = cli("endpoint", "list")
    as_json = cli("endpoint", "list", "-o", "json")
    live_only = cli("endpoint", "list", "--state", "Live", "-o", "json")

    assert table.exit_code == 0, table.output
    row = next(line for line in table.stdout.splitlines() if line.startswith("listed "))
    assert "echo" in row
    assert "Live" in row
    assert "1/1" in row
    assert all(len(line) <= 80 for line in table.stdout.splitlines())
    page = parse_json(as_json)
    assert "listed" in [endpoint["name"] for endpoint in page["items"]]
    assert page["total"] == client.list_endpoints()["total"]
    assert {endpoint["state"] for endpoint in parse_json(live_only)["items"]} == {"Live"}


@pytest.fixture
def shared_endpoint(client: Client) -> Iterator[dict]:
    """An endpoint of the default tenant shared with all tenants, stopped at once."""
    client.set_sharing(True)
    endpoint = client.create_endpoint(
        "default", unique("shared"), "echo", share_with_all_tenants=True
    )
    client.stop_endpoint(endpoint["id"])
    yield endpoint
    client.set_sharing(False, unshare_existing=True)


def test_shared_endpoint_by_name_in_other_tenant(
    cli: RunCli, client: Client, shared_endpoint: dict
) -> None:
    tenant = unique("elsewhere")
    client.create_tenant(tenant)
    key = new_user(client, unique("outsider"), tenant)

    info = cli("endpoint", "info", shared_endpoint["name"], BERTH_API_KEY=key)
    listed = cli("endpoint", "list", BERTH_API_KEY=key)
    own_list = cli("endpoint", "list")

    assert info.exit_code == 0, info.output
    assert f"ID               {shared_endpoint['id']}" in info.stdout
    assert "Tenant           default" in info.stdout
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.splitlines()[0].split()[:3] == ["Name", "Tenant", "Project"]
    row = next(line for line in listed.stdout.splitlines() if shared_endpoint["name"] in line)
    assert row.split()[1:3] == ["default", "default"]
    # The endpoint is in the admin's own tenant, so the admin's list has no Tenant column.
    assert own_list.stdout.splitlines()[0].split()[:2] == ["Name", "Project"]


def test_update_instances_waits_until_ready(cli: RunCli) -> None:
    create_endpoint(cli, "scaled")

    result = cli(
        "endpoint",
        "update",
        "--endpoint",
        "scaled",
        "--instances",
        "2",
        "--description",
        "two now",
        "--wait",
        "--timeout",
        WAIT_TIMEOUT_S,
        "-o",
        "json",
    )

    endpoint = parse_json(result)
    assert endpoint["state"] == "Live"
    assert endpoint["instances"] == 2
    assert endpoint["ready_instances"] == 2
    assert endpoint["description"] == "two now"


def instance_states(table_output: str, instance_ids: list[str]) -> list[str]:
    """Return the State column of the instance table for each instance, in the given order."""
    rows = {}
    for line in table_output.splitlines():
        columns = line.split()
        if len(columns) > 1:
            rows[columns[0]] = columns[1]
    return [rows[instance_id[: endpoint_views.SHORT_ID_LENGTH]] for instance_id in instance_ids]


def test_update_scale_down_shows_draining(cli: RunCli) -> None:
    created = create_endpoint(cli, "scaled-down", "--instances", "2")
    instance_ids = [instance["id"] for instance in created["instance_list"]]

    updated = cli("endpoint", "update", "scaled-down", "--instances", "1")
    info = cli("endpoint", "info", "scaled-down")

    assert updated.exit_code == 0, updated.output
    assert "Instances        1 of 1 ready, 1 draining\n" in updated.stdout
    older_state, newer_state = instance_states(updated.stdout, instance_ids)
    assert older_state == "Ready"
    # The reconciler drains the newest instance. Whether it has started yet or not, the
    # table calls it Draining, as the API does once it has.
    assert newer_state == "Draining"
    assert "\n1 instance drains: it leaves routing at once" in updated.stdout
    assert "Follow it with `berth endpoint info scaled-down`, or add --wait.\n" in updated.stdout
    assert info.exit_code == 0, info.output
    assert "Instances        1 of 1 ready" in info.stdout
    assert "2 of 1" not in info.stdout


@pytest.mark.parametrize(
    ("instances", "generation", "rows", "expected"),
    [
        # A scale-down drains the newest instance of the current generation.
        (1, 1, [("a", 1, "Ready"), ("b", 1, "Ready")], {"b"}),
        (2, 1, [("a", 1, "Ready"), ("b", 1, "Ready")], set()),
        (1, 1, [("a", 1, "Ready"), ("b", 1, "Ready"), ("c", 1, "Ready")], {"b", "c"}),
        # An instance that is not Ready yet is drained before a Ready one.
        (1, 1, [("a", 1, "Ready"), ("b", 1, "Starting")], set()),
        (1, 1, [("a", 1, "Ready"), ("b", 1, "Ready"), ("c", 1, "Starting")], {"b"}),
        # A model change drains the older generations once the new instances are ready.
        (1, 2, [("a", 1, "Ready"), ("b", 2, "Ready")], {"a"}),
        (1, 2, [("a", 1, "Ready"), ("b", 2, "Starting")], set()),
        (
            2,
            2,
            [("a", 1, "Ready"), ("b", 1, "Ready"), ("c", 2, "Ready"), ("d", 2, "Starting")],
            set(),
        ),
        # A draining instance is Draining in the API already.
        (1, 1, [("a", 1, "Ready"), ("b", 1, "Draining")], set()),
    ],
)
def test_surplus_instances_are_draining(
    instances: int, generation: int, rows: list[tuple[str, int, str]], expected: set[str]
) -> None:
    endpoint = {
        "instances": instances,
        "generation": generation,
        "ready_instances": sum(1 for _id, _generation, state in rows if state == "Ready"),
        "instance_list": [
            {"id": instance_id, "generation": row_generation, "state": state}
            for instance_id, row_generation, state in rows
        ],
    }

    assert endpoint_views.draining_instance_ids(endpoint) == expected


@pytest.mark.parametrize(
    ("instances", "states", "expected"),
    [
        (2, ("Ready", "Starting"), "1 of 2 ready"),
        (1, ("Ready", "Ready"), "1 of 1 ready, 1 draining"),
        (1, ("Ready", "Draining"), "1 of 1 ready, 1 draining"),
        (2, ("Draining", "Draining"), "0 of 2 ready, 2 draining"),
        (1, ("Ready", "Ready", "Draining"), "1 of 1 ready, 2 draining"),
    ],
)
def test_instances_text_counts_draining(
    instances: int, states: tuple[str, ...], expected: str
) -> None:
    endpoint = {
        "instances": instances,
        "generation": 1,
        "ready_instances": states.count("Ready"),
        "instance_list": [
            {"id": f"instance-{index}", "generation": 1, "state": state}
            for index, state in enumerate(states)
        ],
    }

    assert endpoint_views.instances_text(endpoint) == expected


@pytest.mark.parametrize(
    ("rows", "expected_text", "expected_cell"),
    [
        # One of two new instances is ready while both old ones serve.
        (
            [("a", 1, "Ready"), ("b", 1, "Ready"), ("c", 2, "Ready"), ("d", 2, "Starting")],
            "1 of 2 new ready, 2 old serving",
            "1/2 +2 old",
        ),
        # Every new instance is ready: the old ones drain next.
        (
            [("a", 1, "Ready"), ("b", 2, "Ready"), ("c", 2, "Ready")],
            "2 of 2 ready, 1 draining",
            "2/2",
        ),
    ],
)
def test_instances_text_counts_old_apart(
    rows: list[tuple[str, int, str]], expected_text: str, expected_cell: str
) -> None:
    endpoint = {
        "instances": 2,
        "generation": 2,
        "instance_list": [
            {"id": instance_id, "generation": generation, "state": state}
            for instance_id, generation, state in rows
        ],
    }

    assert endpoint_views.instances_text(endpoint) == expected_text
    assert endpoint_views.ready_column_text(endpoint) == expected_cell


def test_update_shows_state_after_change(cli: RunCli) -> None:
    create_endpoint(cli, "scaled-up")

    result = cli("endpoint", "update", "scaled-up", "--instances", "2", "-o", "json")

    endpoint = parse_json(result)
    # The response to the change still read Live with one instance; the reconciler has
    # started the second one since.
    assert endpoint["state"] == "Updating"
    assert endpoint["instances"] == 2
    assert [row["state"] for row in endpoint["instance_list"]].count("Ready") == 1
    assert len(endpoint["instance_list"]) == 2


def test_update_says_what_happens_next(cli: RunCli) -> None:
    create_endpoint(cli, "described")

    described = cli("endpoint", "update", "described", "--description", "only words")
    scaled = cli("endpoint", "update", "described", "--instances", "2")

    assert described.exit_code == 0, described.output
    assert "State            Live\n" in described.stdout
    assert described.stdout.endswith(
        "\nNo instance is started or replaced, so the change is in effect now.\n"
    )
    assert scaled.exit_code == 0, scaled.output
    assert "State            Updating (" in scaled.stdout
    assert "\n1 more instance starts next to the others.\n" in scaled.stdout
    assert "Follow it with `berth endpoint info described`, or add --wait." in scaled.stdout


def test_update_names_rolling_update_once(cli: RunCli) -> None:
    create_endpoint(cli, "rolled")
    registered = cli("model", "register", "echo-rolled", "--ml-app", "echo")
    assert registered.exit_code == 0, registered.output

    result = cli("endpoint", "update", "rolled", "--model", "echo-rolled")

    assert result.exit_code == 0, result.output
    assert "1 new instance starts next to the old one" in result.stdout
    # The endpoint's own note and the next step do not both announce the update.
    assert result.stdout.count("Rolling update") <= 1, result.stdout


def test_update_without_changes_is_usage_error(cli: RunCli) -> None:
    result = cli("endpoint", "update", "--endpoint", "anything")

    assert result.exit_code == 2
    assert "nothing to update" in unboxed(result.output)


def test_stop_and_restart_with_wait(cli: RunCli, client: Client) -> None:
    created = create_endpoint(cli, "stop-start")
    first_generation = created["instance_list"][0]["generation"]

    stopped = cli("endpoint", "stop", "-e", "stop-start", "--wait", "--timeout", WAIT_TIMEOUT_S)
    assert stopped.exit_code == 0, stopped.output
    assert stopped.stdout.strip() == "Endpoint stop-start is Stopped."
    assert client.get_endpoint("stop-start")["instance_list"] == []

    restarted = cli(
        "endpoint",
        "restart",
        "--endpoint",
        "stop-start",
        "--wait",
        "--timeout",
        WAIT_TIMEOUT_S,
    )
    assert restarted.exit_code == 0, restarted.output
    assert restarted.stdout.strip() == "Endpoint stop-start is Live."
    endpoint = client.get_endpoint("stop-start")
    assert endpoint["ready_instances"] == 1
    assert endpoint["instance_list"][0]["generation"] > first_generation


def test_restart_wait_stops_without_slots(cli: RunCli, client: Client) -> None:
    # The test server has 8 instance slots, so with one of them held by another endpoint
    # an endpoint of 8 instances cannot deploy.
    create_endpoint(cli, "slot-holder")
    client.create_endpoint("default", "no-room", "echo", instances=8)

    started = time.monotonic()
    result = cli("endpoint", "restart", "no-room", "--wait", "--timeout", "300")
    waited_s = time.monotonic() - started

    assert result.exit_code == 1, result.output
    assert waited_s < 60
    assert "Error: stopped waiting: endpoint 'no-room' is Pending, waiting for 8 free " in (
        result.stderr
    )
    assert "starts by itself once enough slots are free" in result.stderr
    assert "`berth endpoint update no-room --instances N`" in result.stderr
    endpoint = client.get_endpoint("no-room")
    assert endpoint["state"] == "Pending"
    assert endpoint["desired_state"] == "running"


def test_restart_live_waits_for_new_instances(cli: RunCli) -> None:
    created = create_endpoint(cli, "rolling")
    old_instance = created["instance_list"][0]

    result = cli(
        "endpoint", "restart", "rolling", "--wait", "--timeout", WAIT_TIMEOUT_S, "-o", "json"
    )

    endpoint = parse_json(result)
    assert endpoint["state"] == "Live"
    assert [instance["id"] for instance in endpoint["instance_list"]] != [old_instance["id"]]
    assert all(
        instance["generation"] > old_instance["generation"]
        for instance in endpoint["instance_list"]
    )


def test_follow_hint_keeps_the_named_project(cli: RunCli) -> None:
    assert cli("project", "create", "hint-other").exit_code == 0
    create_endpoint(cli, "hinted")
    create_endpoint(cli, "hinted", "--project", "hint-other")

    result = cli("endpoint", "restart", "hinted", "--project", "hint-other")

    assert result.exit_code == 0, result.output
    # The name alone is in two projects, so the hint names the project.
    assert "`berth endpoint info hinted --project hint-other`" in result.stdout


def test_restart_without_wait_shows_update(cli: RunCli) -> None:
    create_endpoint(cli, "restart-no-wait")

    result = cli("endpoint", "restart", "restart-no-wait")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # The response to the restart still read Live; the reconciler has begun since.
    assert lines[0].startswith("Restart of endpoint restart-no-wait accepted; it is Updating (")
    assert lines[1] == (
        "1 new instance starts next to the old one, which keeps serving "
        "until every new instance is ready and then drains."
    )
    assert lines[2] == "Follow it with `berth endpoint info restart-no-wait`, or add --wait."


def test_stop_without_wait_reports_request(cli: RunCli) -> None:
    create_endpoint(cli, "stop-no-wait")

    result = cli("endpoint", "stop", "stop-no-wait")

    assert result.exit_code == 0, result.output
    # The instance may have ended by the time the endpoint is read again.
    assert result.stdout.startswith(
        (
            "Stop of endpoint stop-no-wait accepted; it is Stopping",
            "Stop of endpoint stop-no-wait accepted; it is Stopped.",
        )
    )
    assert "Then the endpoint is Stopped." in result.stdout
    assert "add --wait" in result.stdout


def test_stop_of_stopped_endpoint_says_so(cli: RunCli) -> None:
    create_endpoint(cli, "stop-twice")
    first = cli("endpoint", "stop", "stop-twice", "--wait")

    second = cli("endpoint", "stop", "stop-twice")

    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert second.stdout == "Endpoint stop-twice is already Stopped.\n"


def test_delete_prints_message(cli: RunCli, client: Client) -> None:
    cli("endpoint", "create", "--endpoint-name", "doomed", "--model", "echo")

    result = cli("endpoint", "delete", "--project", "default", "--endpoint", "doomed")

    assert result.exit_code == 0, result.output
    assert result.stdout == "Endpoint doomed successfully marked for deletion.\n"
    after = cli("endpoint", "info", "doomed")
    assert after.exit_code == 1
    assert "not found" in after.stderr


def test_delete_json_is_api_response(cli: RunCli) -> None:
    cli("endpoint", "create", "--endpoint-name", "doomed-json", "--model", "echo")

    result = cli("endpoint", "delete", "doomed-json", "-o", "json")

    deleted = json.loads(result.stdout)
    assert deleted["name"] == "doomed-json"
    assert deleted["state"] == "Deleting"


@pytest.mark.parametrize(("reply", "deleted"), [("n\n", False), ("y\n", True)])
def test_delete_on_terminal_asks_first(
    cli: RunCli, client: Client, monkeypatch: pytest.MonkeyPatch, reply: str, deleted: bool
) -> None:
    name = f"confirm-{'yes' if deleted else 'no'}"
    cli("endpoint", "create", "--endpoint-name", name, "--model", "echo")
    monkeypatch.setattr(output, "stdin_is_terminal", lambda: True)

    result = cli("endpoint", "delete", name, input=reply)

    assert f"Delete endpoint '{name}'?" in result.stderr
    assert result.exit_code == (0 if deleted else 1)
    names = [endpoint["name"] for endpoint in client.list_endpoints()["items"]]
    assert (name not in names) == deleted


def test_delete_yes_skips_question_on_terminal(
    cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli("endpoint", "create", "--endpoint-name", "confirm-flag", "--model", "echo")
    monkeypatch.setattr(output, "stdin_is_terminal", lambda: True)

    result = cli("endpoint", "delete", "confirm-flag", "--yes")

    assert result.exit_code == 0, result.output
    assert "Delete endpoint" not in result.stderr


def test_info_and_list_show_checkpoint(cli: RunCli, client: Client) -> None:
    created = client.create_endpoint("default", "shows-checkpoint", "echo")
    assert created["checkpoint"] is not None
    reference = f"echo:{created['checkpoint']['name']}"

    info = cli("endpoint", "info", "shows-checkpoint")
    table = cli("endpoint", "list")

    assert info.exit_code == 0, info.output
    assert f"Model            {reference}\n" in info.stdout
    assert table.exit_code == 0, table.output
    row = next(line for line in table.stdout.splitlines() if line.startswith("shows-checkpoint "))
    assert reference in row.split()


def test_model_text_without_checkpoint() -> None:
    endpoint = {"model": {"name": "echo"}, "checkpoint": None}

    assert endpoint_views.model_text(endpoint) == "echo"


def test_ready_instance_error_reads_as_past(capsys: pytest.CaptureFixture[str]) -> None:
    times = {"started_at": None, "ready_at": None}
    instances = [
        {"id": "aaaaaaaa-1", "state": "Ready", "last_error": "killed by SIGKILL", **times},
        {"id": "bbbbbbbb-2", "state": "Exited", "last_error": "model failed to load", **times},
    ]
    for instance in instances:
        instance.update(generation=1, restart_count=1, pid=None)

    endpoint_views._print_instances(instances, set())

    out = capsys.readouterr().out
    assert "Instance aaaaaaaa is Ready again; its last error was: killed by SIGKILL" in out
    assert "Last error of instance bbbbbbbb: model failed to load" in out
