"""Endpoint API key rules, checked through the REST API and the gateway."""

import time

import pytest
from sqlalchemy import create_engine, text

from berth.client import ApiError, Client
from tests.e2e.conftest import chat, create_live, wait_until
from tests.support import BerthServer


def test_first_key_is_created_with_endpoint(client: Client) -> None:
    created = client.create_endpoint("default", "keys-first", "echo")

    keys = client.list_keys(created["id"])

    assert len(keys) == 1
    assert keys[0]["description"] == "FirstKey"
    assert keys[0]["is_first"] is True
    assert keys[0]["status"] == "Active"
    assert keys[0]["key"] == created["first_key"]


def test_first_key_cannot_be_edited_or_revoked(client: Client) -> None:
    created = client.create_endpoint("default", "keys-protected", "echo")
    first = client.list_keys(created["id"])[0]

    with pytest.raises(ApiError) as edit_error:
        client.edit_key(created["id"], first["id"], "renamed")
    with pytest.raises(ApiError) as revoke_error:
        client.revoke_key(created["id"], first["id"])

    assert edit_error.value.status == 409
    assert "FirstKey" in edit_error.value.message
    assert "cannot be edited" in edit_error.value.message
    assert revoke_error.value.status == 409
    assert "cannot be revoked" in revoke_error.value.message
    assert client.get_key(created["id"], first["id"])["description"] == "FirstKey"


@pytest.mark.parametrize("description", ["FirstKey", " firstkey "])
def test_first_key_description_is_reserved(client: Client, description: str) -> None:
    created = client.create_endpoint("default", f"keys-reserved-{len(description)}", "echo")
    second = client.add_key(created["id"], "mobile app")

    with pytest.raises(ApiError) as add_error:
        client.add_key(created["id"], description)
    with pytest.raises(ApiError) as edit_error:
        client.edit_key(created["id"], second["id"], description)

    assert add_error.value.status == 422
    assert add_error.value.field == "description"
    assert "reserved" in add_error.value.message
    assert edit_error.value.status == 422
    assert len(client.list_keys(created["id"])) == 2
    assert client.get_key(created["id"], second["id"])["description"] == "mobile app"


def test_revoked_key_rejected_within_one_second(client: Client) -> None:
    endpoint, first_key = create_live(client, "keys-revoke")
    extra = client.add_key(endpoint["id"], "mobile app")
    assert chat(endpoint, extra["key"]).status_code == 200

    revoked_at = time.monotonic()
    client.revoke_key(endpoint["id"], extra["id"])
    wait_until(
        lambda: chat(endpoint, extra["key"]).status_code == 401,
        1.0,
        "the revoked key to be rejected",
        interval_s=0.02,
    )

    assert time.monotonic() - revoked_at < 1.0
    rejected = chat(endpoint, extra["key"])
    assert rejected.json()["error"]["code"] == "revoked_api_key"
    assert chat(endpoint, first_key).status_code == 200
    listed = {row["id"]: row for row in client.list_keys(endpoint["id"])}
    assert listed[extra["id"]]["status"] == "Revoked"
    assert listed[extra["id"]]["revoked_at"] is not None


def test_revocation_is_final(client: Client) -> None:
    created = client.create_endpoint("default", "keys-final", "echo")
    extra = client.add_key(created["id"], "temporary")
    revoked = client.revoke_key(created["id"], extra["id"])

    again = client.revoke_key(created["id"], extra["id"])
    with pytest.raises(ApiError) as edited:
        client.edit_key(created["id"], extra["id"], "still revoked")

    assert revoked["already_revoked"] is False
    assert again["status"] == "Revoked"
    assert again["already_revoked"] is True
    assert again["revoked_at"] == revoked["revoked_at"]
    assert edited.value.status == 409
    assert edited.value.field == "apikey"
    assert edited.value.message == (
        f"key {extra['id']} ('temporary') is revoked, and the description of a revoked key "
        "cannot be edited. Revoking is final, so add a new key if you need one"
    )
    key = client.get_key(created["id"], extra["id"])
    assert key["status"] == "Revoked"
    assert key["description"] == "temporary"


def test_edit_key_description(client: Client) -> None:
    created = client.create_endpoint("default", "keys-edit", "echo")
    extra = client.add_key(created["id"], "old words")

    edited = client.edit_key(created["id"], extra["id"], "  partner team  ")

    assert edited["description"] == "partner team"
    assert client.get_key(created["id"], extra["id"])["description"] == "partner team"


@pytest.mark.parametrize("description", ["", "   ", "x" * 201])
def test_bad_key_description_is_rejected(client: Client, description: str) -> None:
    created = client.create_endpoint("default", f"keys-bad-{len(description)}", "echo")

    with pytest.raises(ApiError) as error:
        client.add_key(created["id"], description)

    assert error.value.status == 422
    assert error.value.field == "description"
    assert len(client.list_keys(created["id"])) == 1


def test_delete_stops_every_key(client: Client) -> None:
    endpoint, first_key = create_live(client, "keys-delete")
    extra = client.add_key(endpoint["id"], "second")["key"]

    client.delete_endpoint(endpoint["id"])

    for key in (first_key, extra):
        response = wait_until(
            lambda key=key: (r := chat(endpoint, key)).status_code == 401 and r,
            1.0,
            "keys of a deleted endpoint to be rejected",
            interval_s=0.02,
        )
        assert response.json()["error"]["code"] == "invalid_api_key"


def test_unknown_key_id_is_404(client: Client) -> None:
    created = client.create_endpoint("default", "keys-missing", "echo")
    missing = "00000000-0000-0000-0000-000000000000"

    with pytest.raises(ApiError) as error:
        client.get_key(created["id"], missing)

    assert error.value.status == 404
    assert missing in error.value.message


def test_no_key_stored_or_logged_in_plain_text(client: Client, server: BerthServer) -> None:
    created = client.create_endpoint("default", "keys-secret", "echo")
    extra = client.add_key(created["id"], "secret check")
    secrets = [created["first_key"], extra["key"]]

    engine = create_engine(f"sqlite:///{server.home / 'berth.db'}")
    with engine.connect() as connection:
        dump = "\n".join(
            str(row)
            for table in ("endpoint_keys", "platform_keys", "endpoints")
            for row in connection.execute(text(f"SELECT * FROM {table}"))
        )
    engine.dispose()

    for secret in secrets:
        assert secret not in dump
        assert secret not in server.log()
