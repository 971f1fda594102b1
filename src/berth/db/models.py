"""SQLAlchemy models: the desired and observed state of the whole installation.

Rows that a gateway caches (endpoints, instances, endpoint keys) carry `seq`, a value
taken from one global counter in the same transaction as the change. Because every
writer updates that one counter row, transactions commit in `seq` order, so a gateway
that remembers the highest `seq` it has seen can fetch exactly what changed since.
"""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from berth.states import (
    CheckpointFormat,
    DesiredState,
    EndpointState,
    InstanceState,
    KeyStatus,
    MLApp,
    ModelSharing,
    Role,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value if value.tzinfo else value.replace(tzinfo=UTC)


def _enum(enum_type: type[StrEnum]) -> Enum:
    """Store a str enum as its value in a VARCHAR and load it back as the enum member."""
    return Enum(
        enum_type,
        native_enum=False,
        create_constraint=False,
        length=max(len(member.value) for member in enum_type),
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    # Named constraints, so later migrations can drop or change them on every database.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Counter(Base):
    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class OrganizationSettings(Base):
    __tablename__ = "organization_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    share_with_all_tenants: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), nullable=False)
    name_key: Mapped[str] = mapped_column(String(63), nullable=False, unique=True)
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    username: Mapped[str] = mapped_column(String(63), nullable=False)
    username_key: Mapped[str] = mapped_column(String(63), nullable=False, unique=True)
    is_org_admin: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    # argon2 hash for web sign-in; None for users who use platform keys only.
    password_hash: Mapped[str | None] = mapped_column(String(200))
    default_tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id"))

    default_tenant: Mapped[Tenant | None] = relationship()
    memberships: Mapped[list["Membership"]] = relationship(back_populates="user")


class Membership(Base):
    __tablename__ = "memberships"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    role: Mapped[Role] = mapped_column(_enum(Role), nullable=False)

    user: Mapped[User] = relationship(back_populates="memberships")
    tenant: Mapped[Tenant] = relationship()


class PlatformKey(Base):
    """A user's secret for the management API and CLI; only its SHA-256 is stored."""

    __tablename__ = "platform_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    # The first characters of the key, enough to recognize it in a list.
    key_prefix: Mapped[str] = mapped_column(String(20), nullable=False, default="")
    description: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


class WebSession(Base):
    """A signed-in browser. The cookie carries the token; the table stores only its SHA-256."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)

    user: Mapped[User] = relationship()


class AuditEntry(Base):
    """One management action: who did what to which resource, when and from where."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_tenant_time", "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    actor_id: Mapped[str | None] = mapped_column(String(36), index=True)
    actor_name: Mapped[str] = mapped_column(String(63), nullable=False, default="")
    # The tenant the resource belongs to; None for organization-wide actions.
    tenant_id: Mapped[str | None] = mapped_column(String(36))
    action: Mapped[str] = mapped_column(String(63), nullable=False, index=True)
    resource_type: Mapped[str] = mapped_column(String(32), nullable=False)
    resource_id: Mapped[str] = mapped_column(String(36), nullable=False, default="")
    resource_name: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    source_address: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (
        Index(
            "uq_projects_tenant_name",
            "tenant_id",
            "name_key",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), nullable=False)
    name: Mapped[str] = mapped_column(String(63), nullable=False)
    name_key: Mapped[str] = mapped_column(String(63), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Raised by each rename or description change, for the optimistic `version` check.
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1, server_default="1")

    tenant: Mapped[Tenant] = relationship()
    owner: Mapped[User] = relationship()


class Model(Base):
    """An entry of the Model Hub: an artifact on disk plus what is known about it.

    Names are unique within the owner's tenant; built-in models have no tenant and
    their names are kept apart by the start-up code.
    """

    __tablename__ = "models"
    __table_args__ = (
        Index(
            "uq_models_tenant_name",
            "tenant_id",
            "name_key",
            unique=True,
            sqlite_where=text("tenant_id IS NOT NULL AND deleted_at IS NULL"),
            postgresql_where=text("tenant_id IS NOT NULL AND deleted_at IS NULL"),
        ),
        Index("ix_models_name_key", "name_key"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), nullable=False)
    name_key: Mapped[str] = mapped_column(String(63), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    ml_app: Mapped[MLApp] = mapped_column(_enum(MLApp), nullable=False)
    architecture: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    field_of_application: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    owner_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id"))
    is_base: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    is_builtin: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    is_demo: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    sharing: Mapped[ModelSharing] = mapped_column(
        _enum(ModelSharing), nullable=False, default=ModelSharing.PRIVATE
    )
    # Where the artifact lives: a folder path, or "builtin:NAME" for models that Berth
    # locates or builds itself on first use.
    artifact: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    # Deleted models stay as rows because deleted endpoints still refer to them.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    owner: Mapped[User | None] = relationship()
    checkpoints: Mapped[list["Checkpoint"]] = relationship(
        back_populates="model", order_by="Checkpoint.created_at"
    )


class Checkpoint(Base):
    """One version of a model's files. `Model.artifact` mirrors the newest checkpoint,
    which is what an endpoint gets when it names only the model."""

    __tablename__ = "checkpoints"
    __table_args__ = (
        Index(
            "uq_checkpoints_model_name",
            "model_id",
            "name_key",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(63), nullable=False)
    name_key: Mapped[str] = mapped_column(String(63), nullable=False)
    # A folder or file path, or "builtin:NAME" for files that Berth locates or builds.
    artifact: Mapped[str] = mapped_column(Text, nullable=False)
    format: Mapped[CheckpointFormat] = mapped_column(_enum(CheckpointFormat), nullable=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # "sha256:<hex>" over the relative paths and contents of every file, in path order.
    checksum: Mapped[str] = mapped_column(String(80), nullable=False, default="")
    # True when the files were left in place instead of copied into Berth's storage.
    linked: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Read from the files at import, or set at server start for built-in checkpoints.
    # "" and None mean unknown, for checkpoints imported before Berth recorded them.
    architecture: Mapped[str] = mapped_column(
        String(100), nullable=False, default="", server_default=""
    )
    has_chat_template: Mapped[bool | None] = mapped_column(Boolean)
    # Size in bytes and modification time in nanoseconds of each file at `artifact`
    # (relative path to [size, mtime_ns]) when it was imported, compared before an
    # instance starts. None for checkpoints imported before Berth recorded them.
    file_stats: Mapped[dict[str, list[int]] | None] = mapped_column(JSON)
    # Tokens of prompt and completion together that the model was trained on, read from
    # the files at import. An endpoint's context_length may not exceed it. None means
    # unknown: the files do not state it, or the checkpoint was imported before Berth
    # recorded it.
    trained_context_length: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    model: Mapped[Model] = relationship(back_populates="checkpoints")


class Endpoint(Base):
    __tablename__ = "endpoints"
    __table_args__ = (
        Index(
            "uq_endpoints_project_name",
            "project_id",
            "name_key",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index("ix_endpoints_seq", "seq"),
        Index("ix_endpoints_tenant", "tenant_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), nullable=False)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), nullable=False)
    name: Mapped[str] = mapped_column(String(63), nullable=False)
    name_key: Mapped[str] = mapped_column(String(63), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), nullable=False)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"), nullable=False)
    checkpoint_id: Mapped[str | None] = mapped_column(ForeignKey("checkpoints.id"))
    share_with_all_tenants: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    # Desired state, written by request handlers.
    desired_state: Mapped[DesiredState] = mapped_column(_enum(DesiredState), nullable=False)
    instances: Mapped[int] = mapped_column(Integer, nullable=False)
    # Raised whenever a change needs new instances (another model or runtime setting);
    # instances of an older generation are replaced by a rolling update.
    generation: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    # Runtime settings that a user set, such as max_batch_size. Instances get each one as
    # the runtime command-line option of the same name, so unset ones take its default.
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    # Observed state, written by the reconciler only.
    state: Mapped[EndpointState] = mapped_column(_enum(EndpointState), nullable=False)
    state_reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    # The generation that `state` describes; a Failed endpoint is retried only once a
    # restart or an update raises `generation` past it.
    observed_generation: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # The instance count that was last reached. With `observed_generation` it separates a
    # Live endpoint that restarts a crashed instance from one that is being changed.
    observed_instances: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    state_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    seq: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    tenant: Mapped[Tenant] = relationship()
    project: Mapped[Project] = relationship()
    owner: Mapped[User] = relationship()
    model: Mapped[Model] = relationship()
    checkpoint: Mapped[Checkpoint | None] = relationship()
    keys: Mapped[list["EndpointKey"]] = relationship(
        back_populates="endpoint", order_by="EndpointKey.created_at"
    )
    instance_rows: Mapped[list["Instance"]] = relationship(
        back_populates="endpoint", order_by="Instance.created_at"
    )
    # The instances that have not ended, for reading: every restart and scale-down
    # leaves an ended row behind, so instance_rows grows with the endpoint's history.
    open_instances: Mapped[list["Instance"]] = relationship(
        primaryjoin="and_(Instance.endpoint_id == Endpoint.id, Instance.ended_at.is_(None))",
        order_by="Instance.created_at",
        viewonly=True,
    )

    @property
    def artifact(self) -> str:
        """Where the files this endpoint serves live: its checkpoint's, else the model's."""
        if self.checkpoint is not None:
            return self.checkpoint.artifact
        return self.model.artifact

    @property
    def checkpoint_format(self) -> CheckpointFormat | None:
        """Layout of the files at `artifact`; None for built-in models, which Berth lays out."""
        if self.checkpoint is None or self.checkpoint.format == CheckpointFormat.BUILTIN:
            return None
        return self.checkpoint.format


class Instance(Base):
    """One running copy of an endpoint's model, as the reconciler last saw it."""

    __tablename__ = "instances"
    __table_args__ = (Index("ix_instances_seq", "seq"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("endpoints.id"), nullable=False, index=True)
    generation: Mapped[int] = mapped_column(Integer, nullable=False)
    state: Mapped[InstanceState] = mapped_column(_enum(InstanceState), nullable=False)
    # "host:port" where the instance's runtime listens, set once the process exists.
    address: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    # A Unix socket on which the runtime also listens, for gateways on the same machine
    # ("@name" for Linux's abstract namespace); "" when there is none.
    local_socket: Mapped[str] = mapped_column(
        String(200), nullable=False, default="", server_default=""
    )
    pid: Mapped[int | None] = mapped_column(Integer)
    restart_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_error: Mapped[str] = mapped_column(Text, nullable=False, default="")
    # The library serving the model ("transformers", "llama.cpp", ...), as the instance
    # reported it when it became ready, and why a faster one was not used. Both are ""
    # until then.
    runtime: Mapped[str] = mapped_column(String(32), nullable=False, default="", server_default="")
    runtime_note: Mapped[str] = mapped_column(Text, nullable=False, default="", server_default="")
    # The model name, files, file format and runtime settings of the process's last start,
    # as JSON ("" before the first start). During a rolling update, an instance of an
    # earlier generation starts again from it, on the model it served before.
    launch: Mapped[str] = mapped_column(Text, nullable=False, default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when the instance is gone for good; the row stays so gateways see the change.
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    seq: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    endpoint: Mapped[Endpoint] = relationship(back_populates="instance_rows")


class EndpointKey(Base):
    """A secret that authorizes prediction requests to one endpoint.

    The key itself is never stored: `key_hash` (SHA-256) serves look-ups and
    `key_encrypted` (Fernet under the server secret) lets authorized users copy it again.
    """

    __tablename__ = "endpoint_keys"
    __table_args__ = (Index("ix_endpoint_keys_seq", "seq"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("endpoints.id"), nullable=False, index=True)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    key_encrypted: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    is_first: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), nullable=False)
    status: Mapped[KeyStatus] = mapped_column(_enum(KeyStatus), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    seq: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    endpoint: Mapped[Endpoint] = relationship(back_populates="keys")
    owner: Mapped[User] = relationship()
