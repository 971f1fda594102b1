"""The Model Hub screen: importing a model, filters, search and pages, the checkpoint
choice of the model picker, checkpoint details, and deleting models and checkpoints."""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import update

from berth.db.models import Checkpoint
from berth.hub.demo import build_demo_generation_model
from tests.support import server_database
from tests.ui.conftest import MEMBER, PASSWORD, admin_api, check_screen, create_endpoint

pytestmark = pytest.mark.ui

# Owner of the models that these tests add. Models are private to their owner unless
# shared, so the lists that other UI tests check stay as they were. An OrgAdmin, because
# only OrgAdmins may import model files from the server.
HUB_USER = "dora"

# What none_mark() renders for a missing value: a dash, and "None" for screen readers.
NONE_MARK = "–None"

# Wraps the page's fetch so that an import request waits for window.releaseImport(),
# which lets a test look at the dialog while the import runs.
HOLD_IMPORT_SCRIPT = """(() => {
  const pageFetch = window.fetch.bind(window);
  let release;
  const released = new Promise((resolve) => { release = resolve; });
  window.releaseImport = release;
  window.fetch = async (url, init) => {
    if (String(url).endsWith("/models/import")) await released;
    return pageFetch(url, init);
  };
})()"""


@pytest.fixture(scope="module")
def hub_user(server: Any) -> str:
    with admin_api(server) as admin:
        body = {
            "username": HUB_USER,
            "password": PASSWORD,
            "tenant": "default",
            "role": "User",
            "is_org_admin": True,
        }
        admin.post("/users", json=body).raise_for_status()
    return HUB_USER


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny causal LM saved with save_pretrained, as a user's own model folder is."""
    return build_demo_generation_model(tmp_path_factory.mktemp("ui-tiny-lm") / "model")


@pytest.fixture
def cleanup(open_page: Any) -> Iterator[list[str]]:
    """Collect API paths to delete after the test, endpoints before models."""
    paths: list[str] = []
    yield paths
    if paths:
        page = open_page(HUB_USER)
        for path in paths:
            page.context.request.delete(path)


def register_model(page: Any, name: str, **fields: Any) -> dict:
    """Add an Echo model, which needs no files, through the REST API."""
    body = {"name": name, "ml_app": "echo", **fields}
    response = page.context.request.post("/api/v1/models", data=body)
    assert response.status == 201, response.text()
    return response.json()


def import_model(page: Any, path: Path, name: str, **fields: Any) -> dict:
    body = {"path": str(path), "name": name, **fields}
    response = page.context.request.post("/api/v1/models/import", data=body)
    assert response.status == 201, response.text()
    return response.json()


def api_total(page: Any, **filters: str) -> int:
    response = page.context.request.get("/api/v1/models", params={**filters, "limit": 1})
    assert response.ok, response.text()
    return int(response.json()["total"])


def fact(card: Any, term: str) -> Any:
    """Return the value that a model card shows for `term`, such as "Owner"."""
    return (
        card.locator("dl > div")
        .filter(has=card.page.locator(f"dt:text-is('{term}')"))
        .locator("dd")
    )


def test_import_shows_progress_then_model(open_page, hub_user, tiny_model) -> None:
    page = open_page(hub_user)
    page.add_init_script(HOLD_IMPORT_SCRIPT)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Model Hub").click()
    expect(page.get_by_role("heading", name="Model Hub", level=1)).to_be_visible()

    page.get_by_role("button", name="Import model").click()
    dialog = page.get_by_role("dialog", name="Import a model")
    expect(dialog.get_by_label("Checkpoint name")).to_have_value("main")
    dialog.get_by_label("Path on the Berth server").fill(str(tiny_model))
    dialog.get_by_label("Model name").fill("ui-tiny-lm")
    dialog.get_by_role("button", name="Import").click()

    # While the import runs, the dialog is busy and shows a progress message.
    progress = dialog.locator("#model-import-progress")
    expect(progress).to_contain_text("Importing the model")
    expect(progress).to_have_attribute("role", "status")
    expect(dialog.get_by_role("button", name="Import")).to_be_disabled()
    expect(dialog.locator("form")).to_have_attribute("aria-busy", "true")
    page.evaluate("() => window.releaseImport()")

    # The server reads and copies the model's files first, which can take longer than
    # the usual wait on a loaded machine.
    expect(dialog).to_be_hidden(timeout=60_000)
    expect(page.locator("#flash")).to_have_text(
        "Model ui-tiny-lm was imported with checkpoint main."
    )
    card = page.get_by_role("article", name="ui-tiny-lm")
    expect(card.get_by_role("heading", name="ui-tiny-lm")).to_be_focused()
    expect(page.get_by_role("search").get_by_label("Search")).to_have_value("ui-tiny-lm")
    expect(page).to_have_url(re.compile(r"/ui/models\?search=ui-tiny-lm$"))

    expect(fact(card, "ML App")).to_have_text("Text Generation")
    expect(fact(card, "Architecture")).to_have_text("LlamaForCausalLM")
    expect(fact(card, "Field of application")).to_have_text("Language")
    expect(fact(card, "Owner")).to_have_text(HUB_USER)
    expect(fact(card, "Shared with")).to_have_text("Only its owner")
    expect(fact(card, "Base model")).to_have_text("No")

    stored = page.context.request.get("/api/v1/models/ui-tiny-lm").json()
    checksum = stored["checkpoints"][0]["checksum"]
    row = card.get_by_role("row", name=re.compile(r"^main"))
    expect(row.get_by_role("rowheader")).to_have_text(
        re.compile(r"main\s+Default\s+Created .*\d{4}")
    )
    expect(row.get_by_role("cell")).to_have_text(
        [
            "transformers Copied into Berth",
            "LlamaForCausalLM",
            "Yes",
            "512 tokens",
            re.compile(r"^[1-9]\d*$"),
            re.compile(r"^\d+(\.\d)? MiB$"),
            re.compile(re.escape(checksum[:19] + "…")),
        ]
    )
    expect(row.locator("code")).to_have_text(checksum[:19] + "…")


def test_import_error_keeps_form(open_page, hub_user, tiny_model, tmp_path) -> None:
    page = open_page(hub_user, "/ui/models")
    page.get_by_role("button", name="Import model").click()
    dialog = page.get_by_role("dialog", name="Import a model")
    path = dialog.get_by_label("Path on the Berth server")
    name = dialog.get_by_label("Model name")
    missing = tmp_path / "no-such-model"
    path.fill(str(missing))
    name.fill("ui-never-imported")
    dialog.get_by_label("Checkpoint name").fill("v7")
    dialog.get_by_label("ML App").select_option(label="Text Generation")
    dialog.get_by_label("Description").fill("kept after errors")
    dialog.get_by_label("Link the files instead of copying them").check()
    dialog.get_by_role("button", name="Import").click()

    error = dialog.locator("#import-path-error")
    expect(error).to_have_text(f"Path '{missing}' does not exist on the Berth server.")
    expect(path).to_have_attribute("aria-invalid", "true")
    expect(path).to_be_focused()
    expect(dialog.locator("#model-import-progress")).to_have_text("")
    expect(path).to_have_value(str(missing))
    expect(name).to_have_value("ui-never-imported")
    expect(dialog.get_by_label("Checkpoint name")).to_have_value("v7")
    expect(dialog.get_by_label("ML App")).to_have_value("text-generation")
    expect(dialog.get_by_label("Description")).to_have_value("kept after errors")
    expect(dialog.get_by_label("Link the files instead of copying them")).to_be_checked()

    # A name that the API rejects shows next to the name field, and the path error goes.
    path.fill(str(tiny_model))
    name.fill("echo")
    dialog.get_by_role("button", name="Import").click()
    expect(dialog.locator("#import-name-error")).to_contain_text("name of a built-in model")
    expect(error).to_have_text("")
    expect(name).to_be_focused()

    # Closing the dialog keeps what was typed for the next try.
    dialog.get_by_role("button", name="Cancel").click()
    page.get_by_role("button", name="Import model").click()
    expect(name).to_have_value("echo")
    expect(dialog.locator("#import-name-error")).to_have_text("")
    assert api_total(page, search="ui-never-imported") == 0


def test_import_shows_every_field_error(open_page, hub_user, tmp_path) -> None:
    page = open_page(hub_user, "/ui/models")
    page.get_by_role("button", name="Import model").click()
    dialog = page.get_by_role("dialog", name="Import a model")
    path = dialog.get_by_label("Path on the Berth server")
    name = dialog.get_by_label("Model name")
    checkpoint = dialog.get_by_label("Checkpoint name")
    missing = tmp_path / "no-such-model"
    path.fill(str(missing))
    name.fill("has space")
    checkpoint.fill("")
    dialog.get_by_label("Description").fill("kept after errors")
    dialog.get_by_role("button", name="Import").click()

    # The API checks every field and names each invalid one.
    expect(dialog.locator("#import-path-error")).to_have_text(
        f"Path '{missing}' does not exist on the Berth server."
    )
    expect(dialog.locator("#import-name-error")).to_contain_text("'has space' is invalid")
    expect(dialog.locator("#import-checkpoint-error")).to_have_text("Checkpoint must not be empty.")
    for field in (path, name, checkpoint):
        expect(field).to_have_attribute("aria-invalid", "true")
    expect(path).to_be_focused()
    expect(dialog.locator('[data-error-for="form"]')).to_have_text("")
    expect(path).to_have_value(str(missing))
    expect(name).to_have_value("has space")
    expect(checkpoint).to_have_value("")
    expect(dialog.get_by_label("Description")).to_have_value("kept after errors")
    assert api_total(page, search="has space") == 0


def test_filters_search_pages_and_totals(open_page, hub_user, cleanup) -> None:
    page = open_page(hub_user)
    for number in range(1, 13):
        model = register_model(
            page, f"ui-vision-{number:02}", architecture="ToyNet", field_of_application="Vision"
        )
        cleanup.append(f"/api/v1/models/{model['id']}")
    base = register_model(
        page, "ui-vision-base", architecture="ToyNet", field_of_application="Vision", is_base=True
    )
    audio = register_model(
        page, "ui-audio-01", architecture="WaveToy", field_of_application="Audio"
    )
    cleanup += [f"/api/v1/models/{base['id']}", f"/api/v1/models/{audio['id']}"]
    page.goto("/ui/models")
    filters = page.get_by_role("search", name="Filter the models")
    count = page.locator("#model-count")
    cards = page.get_by_role("article")

    filters.get_by_label("Field of application").select_option("Vision")
    expect(count).to_have_text("13 models match the filters.")
    filters.get_by_label("Models per page").select_option("10")
    expect(count).to_have_text("13 models match the filters. Showing 1–10.")
    expect(cards).to_have_count(10)
    expect(page.get_by_text("Page 1 of 2")).to_be_visible()
    expect(page).to_have_url(re.compile(r"\?field_of_application=Vision&per_page=10$"))

    page.get_by_role("link", name="Next page").click()
    expect(count).to_have_text(re.compile(r"Showing 11–13\.$"))
    expect(cards).to_have_count(3)
    expect(count).to_be_focused()
    expect(page.get_by_text("Page 2 of 2")).to_be_visible()
    expect(page.get_by_role("link", name="Next page")).to_have_count(0)

    # The address contains filters and page, so a reload shows the same list.
    page.reload()
    expect(count).to_have_text(re.compile(r"Showing 11–13\.$"))
    expect(filters.get_by_label("Field of application")).to_have_value("Vision")
    expect(filters.get_by_label("Models per page")).to_have_value("10")

    # A changed filter starts again at the first page.
    filters.get_by_label("Base model").select_option(label="Only base models")
    expect(count).to_have_text("1 model matches the filters.")
    expect(cards).to_have_count(1)
    expect(page.get_by_role("article", name="ui-vision-base")).to_contain_text("Base model")
    filters.get_by_label("Base model").select_option(label="Only models that are not base")
    expect(count).to_have_text("12 models match the filters. Showing 1–10.")

    filters.get_by_label("Architecture").select_option("WaveToy")
    expect(count).to_have_text("No model matches these filters.")
    expect(cards).to_have_count(0)

    filters.get_by_role("link", name="Clear filters").click()
    expect(filters.get_by_label("Field of application")).to_have_value("")
    expect(page).to_have_url(re.compile(r"\?per_page=10$"))
    filters.get_by_label("Owner").select_option(HUB_USER)
    filters.get_by_label("ML App").select_option(label="Echo")
    owned_echo = api_total(page, owner=HUB_USER, ml_app="echo")
    assert owned_echo >= 14
    expect(count).to_have_text(re.compile(rf"^{owned_echo} models match the filters\."))

    filters.get_by_label("Search").fill("VISION-07")
    expect(count).to_have_text("1 model matches the filters.")
    expect(page.get_by_role("article", name="ui-vision-07")).to_be_visible()
    filters.get_by_label("Search").fill("toy")
    expect(count).to_have_text(re.compile(r"^14 models match the filters\."))
    assert api_total(page, owner=HUB_USER, ml_app="echo", search="toy") == 14


def test_picker_checkpoint_choice_reaches_endpoint(
    open_page, hub_user, tiny_model, cleanup
) -> None:
    page = open_page(hub_user)
    first = import_model(page, tiny_model, "ui-versioned", link=True)
    second = import_model(page, tiny_model, "ui-versioned", link=True, checkpoint="v2")
    main_id = first["checkpoints"][0]["id"]
    v2_id = second["checkpoints"][1]["id"]
    page.goto("/ui/projects")
    page.get_by_role("link", name="default", exact=True).click()
    # The button has its handler once the page's module scripts have run.
    page.wait_for_load_state("load")
    page.get_by_role("button", name="New endpoint").click()
    dialog = page.get_by_role("dialog", name="Add an endpoint")
    picker = dialog.get_by_label("Select model")
    checkpoint = dialog.get_by_label("Checkpoint", exact=True)
    expect(checkpoint).to_be_hidden()

    # A model with several checkpoints offers them, the newest chosen as the default.
    picker.select_option(label="ui-versioned · Text Generation")
    expect(checkpoint).to_be_visible()
    expect(checkpoint.locator("option")).to_have_count(2)
    expect(checkpoint).to_have_value(v2_id)
    expect(checkpoint.locator("option:checked")).to_contain_text("v2 (default) · transformers")

    # A model with one checkpoint needs no choice.
    picker.select_option(label="echo · Echo")
    expect(checkpoint).to_be_hidden()

    # The Model Hub browser leads to the same choice.
    picker.select_option(label="Select from the Model Hub…")
    hub = page.get_by_role("dialog", name="Select from the Model Hub")
    hub.get_by_label("Search").fill("ui-versioned")
    expect(hub.locator("#model-hub-results")).to_contain_text("1 model")
    hub.get_by_role("radio", name="ui-versioned").check()
    hub.get_by_role("button", name="Use model").click()
    expect(hub).to_be_hidden()
    expect(checkpoint).to_have_value(v2_id)

    checkpoint.select_option(main_id)
    dialog.get_by_label("Endpoint name").fill("ui-on-main")
    dialog.get_by_role("button", name="Add an endpoint").click()
    expect(page).to_have_url(re.compile(r"/ui/endpoints/[0-9a-f-]{36}$"))
    cleanup.insert(0, "/api/v1/endpoints/" + page.url.rsplit("/", 1)[1])
    expect(page.locator("#endpoint-model")).to_have_text("ui-versioned / main")

    # The update dialog starts from the endpoint's checkpoint and can move it.
    page.get_by_role("button", name="Edit").click()
    update = page.get_by_role("dialog", name=re.compile("Update the endpoint"))
    update_checkpoint = update.get_by_label("Checkpoint", exact=True)
    expect(update_checkpoint).to_have_value(main_id)
    update_checkpoint.select_option(v2_id)
    update.get_by_role("button", name="Save changes").click()
    expect(update).to_be_hidden()
    expect(page.locator("#endpoint-model")).to_have_text("ui-versioned / v2")
    cleanup.append(f"/api/v1/models/{first['id']}")


def test_delete_rejected_while_in_use(open_page, hub_user) -> None:
    page = open_page(hub_user)
    register_model(page, "ui-in-use", architecture="BusyNet", field_of_application="Testing")
    endpoint = create_endpoint(page, "ui-uses-model", model="ui-in-use")
    page.goto("/ui/models?search=ui-in-use")
    card = page.get_by_role("article", name="ui-in-use")

    card.get_by_role("button", name="Delete model ui-in-use").click()
    alert = page.get_by_role("alertdialog", name="Delete model ui-in-use?")
    alert.get_by_role("button", name="Yes, delete it").click()
    expect(alert.get_by_role("alert")).to_have_text(
        "Model 'ui-in-use' is used by endpoints ui-uses-model; delete them or move them "
        "to another model first."
    )
    expect(alert).to_be_visible()
    alert.get_by_role("button", name="Cancel").click()
    expect(card).to_be_visible()

    # Once the endpoint is deleted, the model can be deleted too.
    response = page.context.request.delete(f"/api/v1/endpoints/{endpoint['id']}")
    assert response.ok, response.text()
    card.get_by_role("button", name="Delete model ui-in-use").click()
    expect(alert.locator('[data-error-for="form"]')).to_have_text("")
    alert.get_by_role("button", name="Yes, delete it").click()
    expect(alert).to_be_hidden()
    expect(page.locator("#flash")).to_have_text("Model ui-in-use was deleted from the Model Hub.")
    expect(card).to_have_count(0)
    expect(page.locator("#model-count")).to_have_text("No model matches these filters.")


def test_member_sees_shared_model_without_delete(open_page, hub_user, cleanup) -> None:
    owner = open_page(hub_user)
    shared = register_model(
        owner,
        "ui-team-model",
        sharing="tenant",
        architecture="TeamNet",
        field_of_application="Robotics",
    )
    private = register_model(owner, "ui-own-model", architecture="TeamNet")
    cleanup += [f"/api/v1/models/{shared['id']}", f"/api/v1/models/{private['id']}"]

    page = open_page(MEMBER, "/ui/models?architecture=TeamNet")
    expect(page.locator("#model-count")).to_have_text("1 model matches the filters.")
    card = page.get_by_role("article", name="ui-team-model")
    expect(fact(card, "Owner")).to_have_text(HUB_USER)
    expect(fact(card, "Shared with")).to_have_text("All users of default")
    expect(card.get_by_role("button")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^Delete"))).to_have_count(0)
    # Importing reads files on the server, which only an OrgAdmin may.
    expect(page.get_by_role("button", name="Import model")).to_have_count(0)
    expect(page.get_by_text("Only an OrgAdmin can import models")).to_contain_text(
        "ask an OrgAdmin to import it and share it with default"
    )


def test_checkpoint_without_recorded_facts(
    open_page, hub_user, tiny_model, server, cleanup
) -> None:
    page = open_page(hub_user)
    model = import_model(page, tiny_model, "ui-old-import", link=True)
    cleanup.append(f"/api/v1/models/{model['id']}")
    # Checkpoints imported before Berth recorded these facts have none of them.
    database = server_database(server)
    try:
        with database.session() as session:
            session.execute(
                update(Checkpoint)
                .where(Checkpoint.model_id == model["id"])
                .values(
                    architecture="",
                    has_chat_template=None,
                    trained_context_length=None,
                    file_stats=None,
                )
            )
    finally:
        database.dispose()

    page.goto("/ui/models?search=ui-old-import")
    card = page.get_by_role("article", name="ui-old-import")
    row = card.get_by_role("row", name=re.compile("^main"))
    expect(row.get_by_role("cell")).to_have_text(
        [
            "transformers Linked in place",
            NONE_MARK,
            NONE_MARK,
            NONE_MARK,
            NONE_MARK,
            re.compile(r"^\d+(\.\d)? MiB$"),
            re.compile("…"),
        ]
    )


def test_checkpoint_delete_and_rejection(open_page, hub_user, tiny_model, cleanup) -> None:
    page = open_page(hub_user)
    for checkpoint in ("main", "v2", "v3"):
        model = import_model(
            page, tiny_model, "ui-checkpoints", link=True, checkpoint=checkpoint, sharing="tenant"
        )
    cleanup.append(f"/api/v1/models/{model['id']}")

    # Only the owner, a TenantAdmin or an OrgAdmin may delete checkpoints.
    member = open_page(MEMBER, "/ui/models?search=ui-checkpoints")
    expect(member.get_by_role("article", name="ui-checkpoints")).to_be_visible()
    expect(member.get_by_role("button", name=re.compile("^Delete checkpoint"))).to_have_count(0)

    page.goto("/ui/models?search=ui-checkpoints")
    page.wait_for_load_state("load")
    card = page.get_by_role("article", name="ui-checkpoints")
    card.get_by_role("button", name="Delete checkpoint v3").click()
    alert = page.get_by_role("alertdialog", name="Delete checkpoint v3 of model ui-checkpoints?")
    check_screen(page, "checkpoint-delete-alert")
    alert.get_by_role("button", name="Yes, delete it").click()
    expect(alert).to_be_hidden()
    expect(page.locator("#flash")).to_have_text(
        "Checkpoint v3 was deleted from model ui-checkpoints."
    )
    expect(card.get_by_role("row", name=re.compile("^v3"))).to_have_count(0)
    expect(card.get_by_role("row", name=re.compile("^v2"))).to_contain_text("Default")

    # Someone else deletes v2, so main is the only checkpoint, which the API keeps.
    response = page.context.request.delete(f"/api/v1/models/{model['id']}/checkpoints/v2")
    assert response.ok, response.text()
    card.get_by_role("button", name="Delete checkpoint main").click()
    alert = page.get_by_role("alertdialog", name="Delete checkpoint main of model ui-checkpoints?")
    alert.get_by_role("button", name="Yes, delete it").click()
    expect(alert.get_by_role("alert")).to_contain_text(
        "is the only checkpoint of model 'ui-checkpoints'; delete the model instead"
    )
    expect(alert).to_be_visible()
