"""First-start set-up: the organization admin, the default tenant and project, and
the built-in models. Every step is idempotent, so it runs at each start."""

import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from berth.db.models import Checkpoint, Membership, Model, PlatformKey, Project, Tenant, User
from berth.hub.builtin import BUILTIN_MODELS, BuiltinModel
from berth.names import name_key
from berth.secrets import hash_key, new_platform_key
from berth.service.projects import DEFAULT_PROJECT
from berth.service.users import KEY_PREFIX_LENGTH
from berth.states import CheckpointFormat, ModelSharing, Role

logger = logging.getLogger(__name__)

ADMIN_USERNAME = "admin"
DEFAULT_TENANT = "default"
BUILTIN_CHECKPOINT = "main"


@dataclass
class BootstrapResult:
    admin_id: str
    # The generated admin key, when this start created one; shown to the person once.
    generated_admin_key: str | None = None


def bootstrap(session: Session, admin_key: str | None) -> BootstrapResult:
    admin = session.scalar(select(User).where(User.username_key == ADMIN_USERNAME))
    generated = None
    if admin is None:
        admin = User(
            id=str(uuid.uuid4()),
            username=ADMIN_USERNAME,
            username_key=ADMIN_USERNAME,
            is_org_admin=True,
        )
        session.add(admin)
        key = admin_key or new_platform_key()
        generated = None if admin_key else key
        session.add(
            PlatformKey(
                id=str(uuid.uuid4()),
                user_id=admin.id,
                key_hash=hash_key(key),
                # The start of a generated key identifies it in `berth platform-key list`
                # and `revoke`. A key chosen with BERTH_ADMIN_KEY shows none, as its
                # start may be much of the key.
                key_prefix=key[:KEY_PREFIX_LENGTH] if generated else "",
                description="organization admin key created at first start",
            )
        )
        logger.info("created the organization admin '%s'", ADMIN_USERNAME)
    elif admin_key:
        _warn_about_admin_key(session, admin_key)

    tenant = session.scalar(select(Tenant).where(Tenant.name_key == DEFAULT_TENANT))
    if tenant is None:
        tenant = Tenant(id=str(uuid.uuid4()), name=DEFAULT_TENANT, name_key=DEFAULT_TENANT)
        session.add(tenant)
        session.flush()
        session.add(Membership(user_id=admin.id, tenant_id=tenant.id, role=Role.TENANT_ADMIN))
        session.add(
            Project(
                id=str(uuid.uuid4()),
                tenant_id=tenant.id,
                name=DEFAULT_PROJECT,
                name_key=DEFAULT_PROJECT,
                owner_id=admin.id,
                description="created at first start",
            )
        )
        logger.info("created the default tenant and project '%s'", DEFAULT_PROJECT)

    _register_builtin_models(session)
    return BootstrapResult(admin_id=admin.id, generated_admin_key=generated)


def _warn_about_admin_key(session: Session, admin_key: str) -> None:
    """Warn when BERTH_ADMIN_KEY, which only a new home folder uses, is not a usable key."""
    row = session.scalar(select(PlatformKey).where(PlatformKey.key_hash == hash_key(admin_key)))
    if row is not None and row.revoked_at is None:
        return
    if row is not None:
        logger.warning(
            "BERTH_ADMIN_KEY is set to a platform key that was revoked, and revoked keys "
            "never work again; the variable only applies to a new home folder, so sign in "
            "with another key of an OrgAdmin (see 'Lost admin key' in README.md)"
        )
        return
    logger.warning(
        "BERTH_ADMIN_KEY is set but matches no platform key; the variable only applies to a "
        "new home folder, so it was ignored and the existing platform keys are unchanged"
    )


def _register_builtin_models(session: Session) -> None:
    existing = {
        model.name_key: model
        for model in session.scalars(
            select(Model).where(Model.is_builtin.is_(True), Model.deleted_at.is_(None))
        )
    }
    for builtin in BUILTIN_MODELS:
        model_row = existing.get(name_key(builtin.name))
        if model_row is not None:
            _update_builtin_checkpoint(session, model_row, builtin)
            continue
        model = Model(
            id=str(uuid.uuid4()),
            name=builtin.name,
            name_key=name_key(builtin.name),
            description=builtin.description,
            ml_app=builtin.ml_app,
            architecture=builtin.architecture,
            field_of_application=builtin.field_of_application,
            is_base=builtin.is_base,
            is_builtin=True,
            sharing=ModelSharing.ALL_TENANTS,
            is_demo=builtin.is_demo,
            artifact=builtin.artifact,
        )
        session.add(model)
        session.add(
            Checkpoint(
                id=str(uuid.uuid4()),
                model_id=model.id,
                name=BUILTIN_CHECKPOINT,
                name_key=BUILTIN_CHECKPOINT,
                artifact=builtin.artifact,
                format=CheckpointFormat.BUILTIN,
                architecture=builtin.architecture,
                has_chat_template=builtin.has_chat_template,
            )
        )
        logger.info("registered the built-in model '%s'", builtin.name)


def _update_builtin_checkpoint(session: Session, model: Model, builtin: BuiltinModel) -> None:
    """Record the architecture and chat template of a built-in checkpoint that an older
    Berth created without them, or with values that this version changed."""
    checkpoint = session.scalar(
        select(Checkpoint).where(
            Checkpoint.model_id == model.id,
            Checkpoint.name_key == BUILTIN_CHECKPOINT,
            Checkpoint.deleted_at.is_(None),
        )
    )
    if checkpoint is None:
        return
    if (checkpoint.architecture, checkpoint.has_chat_template) == (
        builtin.architecture,
        builtin.has_chat_template,
    ):
        return
    checkpoint.architecture = builtin.architecture
    checkpoint.has_chat_template = builtin.has_chat_template
    logger.info(
        "updated the architecture and chat template of the built-in model '%s'", builtin.name
    )
