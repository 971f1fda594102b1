"""`berth model` and `berth project` commands against a real server."""

from berth.client import Client
from tests.cli.conftest import RunCli, parse_json


def test_model_list_table(cli: RunCli) -> None:
    result = cli("model", "list")

    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[2:] if line.strip()}
    assert "Echo" in rows["echo"]
    assert "Text Embedding" in rows["all-MiniLM-L6-v2"]
    assert all(len(line) <= 80 for line in result.stdout.splitlines())


def test_model_list_filters(cli: RunCli) -> None:
    embedding = parse_json(cli("model", "list", "--ml-app", "text-embedding", "-o", "json"))
    base_only = parse_json(cli("model", "list", "--base", "-o", "json"))
    not_base = parse_json(cli("model", "list", "--no-base", "--search", "llama", "-o", "json"))

    assert [model["ml_app"] for model in embedding["items"]] == ["text-embedding"]
    assert base_only["items"]
    assert all(model["is_base"] for model in base_only["items"])
    assert not_base["items"]
    assert not any(model["is_base"] for model in not_base["items"])


def test_model_list_paging_note(cli: RunCli, client: Client) -> None:
    total = client.list_models()["total"]

    result = cli("model", "list", "--limit", "1", "--offset", "1")

    assert result.exit_code == 0, result.output
    assert f"Showing models 2 to 2 of {total}; use --offset 2 for more." in result.stdout


def test_model_list_offset_past_end(cli: RunCli, client: Client) -> None:
    total = client.list_models()["total"]

    result = cli("model", "list", "--offset", "1000")

    assert result.exit_code == 0, result.output
    assert result.stdout == f"No models at offset 1000; there are {total} in all.\n"


def test_model_list_unknown_ml_app(cli: RunCli) -> None:
    result = cli("model", "list", "--ml-app", "painting")

    assert result.exit_code == 1
    assert "unknown ML App 'painting'" in result.stderr


def test_model_info(cli: RunCli, client: Client) -> None:
    table = cli("model", "info", "echo")
    as_json = cli("model", "info", "echo", "-o", "json")

    assert table.exit_code == 0, table.output
    assert "ML App        Echo (echo)" in table.stdout
    assert parse_json(as_json) == client.get_model("echo")


def test_project_create_info_list(cli: RunCli) -> None:
    created = cli("project", "create", "cli-project", "--description", "made by a test")
    info = parse_json(cli("project", "info", "cli-project", "-o", "json"))
    listed = cli("project", "list")

    assert created.exit_code == 0, created.output
    assert created.stdout.startswith("Created project cli-project in tenant default.")
    assert info["description"] == "made by a test"
    assert any(line.startswith("cli-project ") for line in listed.stdout.splitlines())


def test_project_create_duplicate(cli: RunCli) -> None:
    cli("project", "create", "twice")

    result = cli("project", "create", "twice")

    assert result.exit_code == 1
    assert "a project named 'twice' already exists" in result.stderr


def test_project_info_unknown(cli: RunCli) -> None:
    result = cli("project", "info", "no-such-project")

    assert result.exit_code == 1
    assert "project 'no-such-project' not found" in result.stderr
