"""Endpoint API keys: the first key, adding, editing and revoking.

The first key (description `FirstKey`) is created with the endpoint and can be neither
edited nor revoked. Revocation is final. Gateways pick up every change within their
sync interval because each change takes a new change number.
"""

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from berth.auth import Principal
from berth.db.models import Endpoint, EndpointKey, utcnow
from berth.errors import Conflict, InvalidInput, NotFound
from berth.secrets import KeyVault, ServerSecretError, hash_key, new_endpoint_key
from berth.service import audit
from berth.service.common import (
    MIN_KEY_ID_PREFIX_LENGTH,
    has_only_id_characters,
    looks_like_id,
    looks_like_id_prefix,
    mark_changed,
    new_id,
)
from berth.states import KeyStatus

logger = logging.getLogger(__name__)

FIRST_KEY_DESCRIPTION = "FirstKey"
MAX_DESCRIPTION_LENGTH = 200

# Set by the server at start-up; the service layer encrypts keys with it.
_vault: KeyVault | None = None


def set_vault(vault: KeyVault) -> None:
    global _vault
    _vault = vault


def vault() -> KeyVault:
    if _vault is None:
        raise RuntimeError("the key vault is not configured; call set_vault() at start-up")
    return _vault


def _check_description(description: str) -> str:
    description = description.strip()
    if not description:
        raise InvalidInput("description must not be empty", field="description")
    if description.casefold() == FIRST_KEY_DESCRIPTION.casefold():
        raise InvalidInput(
            f"description '{description}' is reserved for the key created with the "
            "endpoint; choose another description",
            field="description",
        )
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidInput(
            f"description is {len(description)} characters long; "
            f"use at most {MAX_DESCRIPTION_LENGTH}",
            field="description",
        )
    return description


def _new_key_row(
    session: Session, endpoint: Endpoint, principal: Principal, description: str, is_first: bool
) -> tuple[EndpointKey, str]:
    key = new_endpoint_key()
    row = EndpointKey(
        id=new_id(),
        endpoint_id=endpoint.id,
        key_hash=hash_key(key),
        key_encrypted=vault().encrypt(key),
        description=description,
        is_first=is_first,
        owner_id=principal.user_id,
        status=KeyStatus.ACTIVE,
        created_at=utcnow(),
    )
    session.add(row)
    mark_changed(session, row)
    return row, key


def create_first_key(session: Session, endpoint: Endpoint, principal: Principal) -> str:
    _row, key = _new_key_row(session, endpoint, principal, FIRST_KEY_DESCRIPTION, True)
    return key


def add_key(
    session: Session, principal: Principal, endpoint: Endpoint, description: str
) -> tuple[EndpointKey, str]:
    principal.require_manage(endpoint, "add a key to")
    if endpoint.deleted_at is not None:
        raise Conflict(f"endpoint '{endpoint.name}' is being deleted")
    row, key = _new_key_row(session, endpoint, principal, _check_description(description), False)
    _record(session, principal, "key.added", endpoint, row)
    return row, key


def _record(
    session: Session, principal: Principal, action: str, endpoint: Endpoint, row: EndpointKey
) -> None:
    # The key itself never goes into the audit log; its ID and description identify it.
    audit.record(
        session,
        principal,
        action,
        "endpoint_key",
        row.id,
        row.description,
        endpoint.tenant_id,
        endpoint=endpoint.name,
        endpoint_id=endpoint.id,
    )


def list_keys(session: Session, endpoint: Endpoint) -> list[EndpointKey]:
    return list(
        session.scalars(
            select(EndpointKey)
            .where(EndpointKey.endpoint_id == endpoint.id)
            .order_by(EndpointKey.created_at, EndpointKey.id)
        )
    )


def find_key(session: Session, endpoint: Endpoint, ref: str) -> EndpointKey:
    """Find a key of the endpoint by its ID, a unique start of its ID, or the key itself.

    An ID start needs MIN_KEY_ID_PREFIX_LENGTH characters. Keys themselves start with
    berth_ek_, so they never look like one.
    """
    ref = ref.strip()
    query = select(EndpointKey).where(EndpointKey.endpoint_id == endpoint.id)
    names_id = looks_like_id(ref) or looks_like_id_prefix(ref)
    if looks_like_id(ref):
        query = query.where(EndpointKey.id == ref.lower())
    elif names_id:
        query = query.where(EndpointKey.id.startswith(ref.lower())).order_by(EndpointKey.id)
    else:
        query = query.where(EndpointKey.key_hash == hash_key(ref))
    rows = session.scalars(query).all()
    if len(rows) > 1:
        ids = ", ".join(row.id for row in rows)
        raise Conflict(
            f"API key ID '{ref}' is the start of several keys' IDs on endpoint "
            f"'{endpoint.name}' ({ids}); give more characters of the ID",
            field="apikey",
        )
    if not rows and has_only_id_characters(ref) and not names_id:
        # Too short to be an ID start, and keys start with berth_ek_, so it is no key either.
        raise NotFound(
            f"'{ref}' is too short to name an API key; give at least "
            f"{MIN_KEY_ID_PREFIX_LENGTH} characters of the key's ID, as "
            "`berth endpoint list-apikeys` shows it",
            field="apikey",
        )
    if not rows:
        # A value that is not an ID may be the key itself, which must not be echoed.
        key_text = f"'{ref}'" if names_id else "with the value given"
        raise NotFound(
            f"API key {key_text} not found on endpoint '{endpoint.name}'; "
            "`berth endpoint list-apikeys` shows its keys",
            field="apikey",
        )
    return rows[0]


def edit_key(
    session: Session, principal: Principal, endpoint: Endpoint, row: EndpointKey, description: str
) -> EndpointKey:
    principal.require_manage(endpoint, "edit keys of")
    if row.is_first:
        raise Conflict(
            f"the description of the first key ({FIRST_KEY_DESCRIPTION}) cannot be edited; "
            "add a new key with the description you need",
            field="apikey",
        )
    if row.status == KeyStatus.REVOKED:
        raise Conflict(
            f"key {row.id} ('{row.description}') is revoked, and the description of a "
            "revoked key cannot be edited. Revoking is final, so add a new key if you need one",
            field="apikey",
        )
    row.description = _check_description(description)
    _record(session, principal, "key.edited", endpoint, row)
    return row


def revoke_key(
    session: Session, principal: Principal, endpoint: Endpoint, row: EndpointKey
) -> EndpointKey:
    principal.require_manage(endpoint, "revoke keys of")
    if row.is_first:
        raise Conflict(
            f"the first key ({FIRST_KEY_DESCRIPTION}) cannot be revoked; it stays valid for as "
            "long as the endpoint exists",
            field="apikey",
        )
    if row.status == KeyStatus.REVOKED:
        return row
    row.status = KeyStatus.REVOKED
    row.revoked_at = utcnow()
    mark_changed(session, row)
    _record(session, principal, "key.revoked", endpoint, row)
    return row


def reveal(row: EndpointKey) -> str:
    """Decrypt the stored copy of a key. Raises ServerSecretError under another secret."""
    try:
        return vault().decrypt(row.key_encrypted)
    except ServerSecretError:
        # `berth up` checks one stored key at start, so this key was encrypted under
        # another secret than that one.
        logger.error(
            "API key %s of endpoint %s cannot be decrypted with the server secret",
            row.id,
            row.endpoint_id,
        )
        raise
