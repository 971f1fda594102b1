"""`berth up --demo`: deploy the built-in embedding model and show how to call it."""

import json
import time

import typer

from berth.cli.waiting import FAILED
from berth.client import ApiError, Client, ConnectionFailed

DEMO_ENDPOINT = "demo"
DEMO_MODEL = "all-MiniLM-L6-v2"
HEALTH_TIMEOUT_S = 60.0


def deploy_demo(server: str, api_key: str | None) -> None:
    """Create (or reuse) the demo endpoint, wait until it is Live and print how to call it.

    Without `api_key` the client falls back to BERTH_API_KEY or the CLI profile, which
    the first start wrote.
    """
    with Client(server=server, api_key=api_key) as client:
        if not client.api_key:
            typer.secho(
                "--demo needs a platform API key: set BERTH_API_KEY or run `berth login`",
                fg="red",
                err=True,
            )
            return
        _wait_for_server(client)
        endpoint, created = _find_or_create(client)
        if created:
            typer.echo(f"Deploying endpoint '{DEMO_ENDPOINT}' with model {DEMO_MODEL}...")
        elif endpoint["desired_state"] == "stopped" or endpoint["state"] == FAILED:
            # It stays as its owner left it, so waiting for Live would only time out.
            condition = "was stopped" if endpoint["desired_state"] == "stopped" else "is Failed"
            typer.echo(
                f"Endpoint '{DEMO_ENDPOINT}' exists and {condition}; start it with "
                f"`berth endpoint restart {DEMO_ENDPOINT}`."
            )
            return
        else:
            typer.echo(f"Waiting for the existing endpoint '{DEMO_ENDPOINT}' to be Live...")
        live = client.wait_for_state(
            endpoint["id"], {"Live"}, timeout_s=600, on_progress=_report_progress
        )
        key = next(row["key"] for row in client.list_keys(live["id"]) if row["is_first"])
        me = client.get_user("me")
    _print_usage(live, key, me)


def _wait_for_server(client: Client) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while True:
        try:
            client.health()
            return
        except ConnectionFailed:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


_last_reported: list[str] = []


def _report_progress(info: dict) -> None:  # type: ignore[type-arg]
    line = f"  {info['state']}: {info['state_reason']}" if info["state_reason"] else ""
    if line and _last_reported[-1:] != [line]:
        _last_reported.append(line)
        typer.echo(line)


def _find_or_create(client: Client) -> tuple[dict, bool]:  # type: ignore[type-arg]
    """Return the demo endpoint of the active tenant, and whether this call created it."""
    try:
        endpoint = client.get_endpoint(DEMO_ENDPOINT, project="default")
    except ApiError as exc:
        if exc.status != 404:
            raise
    else:
        # A name also finds an endpoint that another tenant shares with all tenants,
        # which is that tenant's demo and not this one's.
        active_tenant = client.whoami()["tenant"]
        if active_tenant is not None and endpoint["tenant_id"] == active_tenant["id"]:
            return endpoint, False
    return client.create_endpoint("default", DEMO_ENDPOINT, DEMO_MODEL, instances=1), True


def _print_usage(endpoint: dict, key: str, me: dict) -> None:  # type: ignore[type-arg]
    base = endpoint["openai_base_url"]
    body = json.dumps({"model": DEMO_MODEL, "input": ["a cat sits on the mat"]})
    typer.secho(f"\nEndpoint '{endpoint['name']}' is Live at {endpoint['url']}", bold=True)
    typer.echo(f"API key (FirstKey): {key}\n")
    typer.echo("Call it with curl:\n")
    typer.echo(
        f"  curl -s {base}/embeddings \\\n"
        f"    -H 'Authorization: Bearer {key}' \\\n"
        f"    -H 'Content-Type: application/json' \\\n"
        f"    -d '{body}'\n"
    )
    typer.echo("Or with the openai Python client:\n")
    typer.echo(
        "  from openai import OpenAI\n"
        f'  client = OpenAI(base_url="{base}", api_key="{key}")\n'
        "  result = client.embeddings.create(\n"
        f'      model="{DEMO_MODEL}", input=["a cat sits on the mat"]\n'
        "  )\n"
        "  print(len(result.data[0].embedding))\n"
    )
    ui_url = f"{endpoint['url'].split('/endpoints/')[0]}/ui/"
    if me["has_password"]:
        typer.echo(f"Web UI: {ui_url} (user '{me['username']}')\n")
    else:
        typer.echo(
            f"Web UI: {ui_url} (user '{me['username']}'; set its password first with "
            "`berth user set-password`)\n"
        )
    typer.echo("Press Ctrl+C to stop Berth.\n")
