"""`berth model list` groups, `register`, `update` and `delete` against a real server."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from berth.cli import output
from berth.client import ApiError, Client
from tests.cli.conftest import RunCli, new_user, parse_json, unboxed, unique


@pytest.fixture
def registered(client: Client) -> Iterator[list[str]]:
    """Collect IDs of models a test registers and delete them afterwards.

    Other tests count the built-in models of each ML App, so none may stay behind.
    """
    ids: list[str] = []
    yield ids
    for model_id in ids:
        try:
            client.delete_model(model_id)
        except ApiError as exc:
            if exc.status != 404:
                raise


def register(
    cli: RunCli, registered: list[str], name: str, *extra: str, **env: str
) -> dict[str, Any]:
    """Register an echo model through the CLI and return its JSON."""
    result = cli("model", "register", name, "--ml-app", "echo", "-o", "json", *extra, **env)
    model: dict[str, Any] = parse_json(result)
    registered.append(model["id"])
    return model


def test_model_register_table(cli: RunCli, registered: list[str]) -> None:
    name = unique("reverser")

    result = cli(
        "model",
        "register",
        name,
        "--ml-app",
        "Echo",
        "--architecture",
        "Reverser",
        "--field-of-application",
        "Testing",
        "--description",
        "made by a test",
        "--sharing",
        "tenant",
    )

    assert result.exit_code == 0, result.output
    registered.append(parse_json(cli("model", "info", name, "-o", "json"))["id"])
    assert result.stdout.startswith(f"Registered model {name} in the Model Hub.")
    assert "Owner         admin" in result.stdout
    assert "Shared with   its tenant" in result.stdout
    assert "Architecture  Reverser" in result.stdout


def test_model_register_relative_path(
    cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    result = cli(
        "model", "register", unique("local"), "--ml-app", "text-embedding", "--path", "weights"
    )

    # The server's error names the path it got, which the CLI made absolute.
    assert result.exit_code == 1
    assert f"'{tmp_path / 'weights'}'" in result.stderr


def test_model_register_missing_path(cli: RunCli) -> None:
    result = cli(
        "model",
        "register",
        unique("ghost"),
        "--ml-app",
        "text-embedding",
        "--path",
        "/no/such/folder",
    )

    assert result.exit_code == 1
    assert "'/no/such/folder' does not exist on the Berth server" in result.stderr


def test_model_list_groups_and_owner(cli: RunCli, client: Client, registered: list[str]) -> None:
    mine = register(cli, registered, unique("mine"))

    own_group = parse_json(cli("model", "list", "--group", "mine", "-o", "json"))
    berth_group = parse_json(cli("model", "list", "--group", "berth", "-o", "json"))
    by_me = parse_json(cli("model", "list", "--owner", "me", "-o", "json"))
    by_berth = parse_json(cli("model", "list", "--owner", "berth", "-o", "json"))
    table = cli("model", "list", "--group", "mine")

    assert mine["name"] in [model["name"] for model in own_group["items"]]
    assert all(model["owner"]["name"] == "admin" for model in own_group["items"])
    assert all(model["is_builtin"] for model in berth_group["items"])
    assert "echo" in [model["name"] for model in berth_group["items"]]
    own_ids = [model["id"] for model in own_group["items"]]
    assert [model["id"] for model in by_me["items"]] == own_ids
    assert by_berth["total"] == berth_group["total"]
    row = next(line for line in table.stdout.splitlines() if line.startswith(mine["name"]))
    assert row.split()[-2:] == ["no", "admin"]


def test_model_list_shared_group(cli: RunCli, client: Client, registered: list[str]) -> None:
    tenant = unique("hub")
    client.create_tenant(tenant)
    owner_key = new_user(client, unique("yan"), tenant)
    colleague_key = new_user(client, unique("zoe"), tenant)
    shared = register(
        cli, registered, unique("team-model"), "--sharing", "tenant", BERTH_API_KEY=owner_key
    )

    seen = parse_json(
        cli("model", "list", "--group", "shared", "-o", "json", BERTH_API_KEY=colleague_key)
    )

    assert [model["name"] for model in seen["items"]] == [shared["name"]]


def test_model_update(cli: RunCli, registered: list[str]) -> None:
    model = register(cli, registered, unique("changing"))

    described = cli("model", "update", model["name"], "--description", "now described")
    shared = parse_json(cli("model", "update", model["id"], "--sharing", "tenant", "-o", "json"))
    nothing = cli("model", "update", model["name"])
    everyone = cli("model", "update", model["name"], "--sharing", "all_tenants")

    assert described.exit_code == 0, described.output
    assert "Description   now described" in described.stdout
    assert shared["sharing"] == "tenant"
    assert nothing.exit_code == 2
    assert "nothing to update" in unboxed(nothing.output)
    assert everyone.exit_code == 1
    assert "sharing with all tenants is turned off" in everyone.stderr


def test_model_update_by_other_user(cli: RunCli, client: Client, registered: list[str]) -> None:
    model = register(cli, registered, unique("guarded"), "--sharing", "tenant")
    member_key = new_user(client, unique("abe"), "default")

    result = cli("model", "update", model["name"], "--description", "x", BERTH_API_KEY=member_key)

    assert result.exit_code == 1
    assert f"you may not change model '{model['name']}'" in result.stderr


def test_model_delete(cli: RunCli, registered: list[str]) -> None:
    model = register(cli, registered, unique("doomed"))
    json_model = register(cli, registered, unique("json-doomed"))

    deleted = cli("model", "delete", model["name"], "--yes")
    as_json = parse_json(cli("model", "delete", json_model["name"], "-o", "json"))
    info_after = cli("model", "info", model["name"])

    assert deleted.stdout == f"Deleted model {model['name']} from the Model Hub.\n"
    assert as_json["id"] == json_model["id"]
    assert info_after.exit_code == 1
    assert "not found in the Model Hub" in info_after.stderr


def test_model_delete_on_terminal_asks_first(
    cli: RunCli, client: Client, registered: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(output, "stdin_is_terminal", lambda: True)
    model = register(cli, registered, unique("asked"))

    result = cli("model", "delete", model["name"], input="n\n")

    assert result.exit_code == 1
    assert f"Delete model '{model['name']}' from the Model Hub?" in result.stderr
    assert client.get_model(model["id"])["name"] == model["name"]


def test_model_delete_builtin_rejected(cli: RunCli) -> None:
    result = cli("model", "delete", "echo", "--yes")

    assert result.exit_code == 1
    assert "model 'echo' is built into Berth; it cannot be deleted" in result.stderr


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from berth.hub.demo import build_demo_generation_model

    return build_demo_generation_model(tmp_path_factory.mktemp("cli-import") / "tiny-lm")


def test_model_import_and_new_checkpoint(cli: RunCli, registered: list[str], tiny_lm: Path) -> None:
    name = unique("imported")

    first = cli("model", "import", str(tiny_lm), "--name", name, "--link", "-o", "json")
    model = parse_json(first)
    registered.append(model["id"])
    second = cli("model", "import", str(tiny_lm), "--name", name, "--checkpoint", "v2", "--link")

    assert first.exit_code == 0
    assert model["ml_app"] == "text-generation"
    assert model["architecture"] == "LlamaForCausalLM"
    assert second.exit_code == 0
    assert f"Imported checkpoint v2 of model {name}" in second.stdout


def test_model_import_missing_path(cli: RunCli) -> None:
    result = cli("model", "import", "/no/such/model", "--name", unique("ghost"))

    assert result.exit_code == 1
    assert "'/no/such/model' does not exist on the Berth server" in result.stderr


def test_model_import_needs_org_admin(cli: RunCli, client: Client, tiny_lm: Path) -> None:
    member_key = new_user(client, unique("ivy"), "default")

    for path in (str(tiny_lm), "/no/such/model"):
        result = cli("model", "import", path, "--name", unique("member"), BERTH_API_KEY=member_key)

        assert result.exit_code == 1, path
        assert "Error: only an OrgAdmin may import" in result.stderr, path
        assert "Ask an OrgAdmin to import the model" in result.stderr, path
        assert "does not exist" not in result.stderr, path


def test_model_register_without_path(cli: RunCli, client: Client) -> None:
    member_key = new_user(client, unique("ida"), "default")
    name = unique("no-path")

    result = cli("model", "register", name, "--ml-app", "text-embedding", BERTH_API_KEY=member_key)

    assert result.exit_code == 1
    message = unboxed(result.stderr)
    assert message.startswith(
        "Error: --path is missing; a Text Embedding model needs the folder or .gguf file"
    )
    assert "only an OrgAdmin may register model files from a path on the server" in message
    assert "Ask an OrgAdmin to import the model" in message
    with pytest.raises(ApiError) as error:
        client.get_model(name)
    assert error.value.status == 404


def test_model_info_lists_checkpoints(
    cli: RunCli, client: Client, registered: list[str], tiny_lm: Path
) -> None:
    name = unique("checkpointed")
    registered.append(
        parse_json(cli("model", "import", str(tiny_lm), "--name", name, "--link", "-o", "json"))[
            "id"
        ]
    )
    cli("model", "import", str(tiny_lm), "--name", name, "--checkpoint", "v2", "--link")
    checkpoints = client.get_model(name)["checkpoints"]

    result = cli("model", "info", name)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("Checkpoint"))
    assert header.split() == ["Checkpoint", "Format", "Size", "Checksum", "Created"]
    rows = {line.split()[0]: line.split() for line in lines[lines.index(header) + 2 :][:2]}
    contents_header = lines.index(header) + 5
    assert lines[contents_header].split() == [
        "Checkpoint",
        "Architecture",
        "Chat",
        "template",
        "Context",
        "length",
    ]
    contents = [line.split() for line in lines[contents_header + 2 :]]
    assert contents == [
        ["main", "LlamaForCausalLM", "yes", "512", "tokens"],
        ["v2", "LlamaForCausalLM", "yes", "512", "tokens"],
    ]
    assert [checkpoint["name"] for checkpoint in checkpoints] == ["main", "v2"]
    for checkpoint in checkpoints:
        row = rows[checkpoint["name"]]
        assert row[1] == checkpoint["format"]
        assert row[2:4] == output.format_size(checkpoint["size_bytes"]).split()
        algorithm, _, digest = checkpoint["checksum"].partition(":")
        assert row[4] == f"{algorithm}:{digest[:12]}"
    assert all(len(line) <= 80 for line in lines)


@pytest.mark.parametrize("path", ["", "   "])
def test_model_import_empty_path(cli: RunCli, client: Client, path: str) -> None:
    name = unique("empty-path")

    result = cli("model", "import", path, "--name", name)

    assert result.exit_code == 2
    assert "'PATH'" in unboxed(result.output)
    assert "the path is empty" in unboxed(result.output)
    with pytest.raises(ApiError) as error:
        client.get_model(name)
    assert error.value.status == 404


@pytest.mark.parametrize(
    ("size_bytes", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (90_900_000, "86.7 MiB"),
        (3 * 1024**4, "3.0 TiB"),
    ],
)
def test_format_size(size_bytes: int, text: str) -> None:
    assert output.format_size(size_bytes) == text


def test_model_info_builtin_checkpoint(cli: RunCli) -> None:
    result = cli("model", "info", "all-MiniLM-L6-v2")

    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if line.startswith("main "))
    assert row.split()[:4] == ["main", "builtin", "-", "-"]


def test_model_delete_checkpoint(
    cli: RunCli, client: Client, registered: list[str], tiny_lm: Path
) -> None:
    name = unique("pruned")
    registered.append(
        parse_json(cli("model", "import", str(tiny_lm), "--name", name, "--link", "-o", "json"))[
            "id"
        ]
    )
    cli("model", "import", str(tiny_lm), "--name", name, "--checkpoint", "v2", "--link")

    deleted = cli("model", "delete-checkpoint", f"{name}:main", "--yes")
    only = cli("model", "delete-checkpoint", f"{name}:v2", "--yes")
    no_checkpoint = cli("model", "delete-checkpoint", name, "--yes")

    assert deleted.exit_code == 0, deleted.output
    assert f"Deleted checkpoint {name}:main." in deleted.stdout
    assert [row["name"] for row in client.get_model(name)["checkpoints"]] == ["v2"]
    assert only.exit_code != 0
    assert "only checkpoint" in unboxed(only.output)
    assert no_checkpoint.exit_code == 2
    assert "MODEL:CHECKPOINT" in unboxed(no_checkpoint.output)


def test_model_import_duplicate_checkpoint_names_option(
    cli: RunCli, registered: list[str], tiny_lm: Path
) -> None:
    name = unique("twice")
    registered.append(
        parse_json(cli("model", "import", str(tiny_lm), "--name", name, "--link", "-o", "json"))[
            "id"
        ]
    )

    again = cli("model", "import", str(tiny_lm), "--name", name, "--link")

    assert again.exit_code != 0
    assert "--checkpoint needs a name that the model does not have yet" in unboxed(again.output)
