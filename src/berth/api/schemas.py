"""Request and response bodies of the management API."""

from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
)

from berth.descriptions import check_description
from berth.runtime.config import (
    DEFAULT_GENERATION_MAX_BATCH_SIZE,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_BATCH_WAIT_MS,
    DEFAULT_MAX_COMPLETION_TOKENS,
    LLAMA_CPP_DEFAULT_CONTEXT_LENGTH,
    MAX_BATCH_SIZE_LIMIT,
    MAX_BATCH_WAIT_MS_LIMIT,
    MAX_COMPLETION_TOKENS_LIMIT,
    MAX_CONTEXT_LENGTH,
    MIN_CONTEXT_LENGTH,
)
from berth.runtime.selection import AUTO, RequestedRuntime
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

Item = TypeVar("Item")

# A free-text description in a request body: plain text without control characters.
Description = Annotated[str, AfterValidator(check_description)]


def _reject_null_description(value: object) -> object:
    if value is None:
        raise ValueError(
            'null does not change or clear the description; send "" to clear it, or leave '
            "description out to keep it"
        )
    return value


def _offer_no_null(schema: dict[str, Any]) -> None:
    """Describe a description change as a string only, since the API rejects null."""
    choices = schema.pop("anyOf", [])
    schema.update(next(choice for choice in choices if choice.get("type") != "null"))
    schema.pop("default", None)


# A new description in a PATCH body. It is None only when the field is left out, because
# an explicit null could mean either "keep" or "clear".
DescriptionChange = Annotated[
    Description | None,
    BeforeValidator(_reject_null_description),
    Field(json_schema_extra=_offer_no_null),
]
_DESCRIPTION_CHANGE_HELP = (
    'new description; "" clears it, null is rejected, and leaving it out keeps it'
)


class Page(BaseModel, Generic[Item]):
    items: list[Item]
    total: int = Field(description="number of items that match, on every page")
    limit: int
    offset: int


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Health(BaseModel):
    status: str
    version: str


class Reference(BaseModel):
    id: str
    name: str


class WhoAmI(BaseModel):
    user: Reference
    is_org_admin: bool
    tenant: Reference | None = Field(
        description="the active tenant; null for a user who belongs to no tenant or only "
        "to disabled tenants"
    )
    no_tenant_reason: str | None = Field(
        default=None,
        description="when tenant is null, why and what to do next; null otherwise",
    )


class ProjectOut(BaseModel):
    id: str
    name: str
    description: str
    tenant: Reference
    owner: Reference
    created_at: datetime
    version: int = Field(description="raised by each rename or description change")


class ProjectCreate(StrictBody):
    name: str = Field(description="project name, unique in the tenant")
    description: Description = Field(default="", max_length=2000)


class ProjectUpdate(StrictBody):
    name: str | None = Field(
        default=None,
        description="new project name, unique in the tenant; the `default` project keeps its name",
    )
    description: DescriptionChange = Field(
        default=None, max_length=2000, description=_DESCRIPTION_CHANGE_HELP
    )
    version: StrictInt | None = Field(
        default=None, description="the version you last read; a stale one gets 409"
    )


class CheckpointOut(BaseModel):
    id: str
    name: str
    format: CheckpointFormat
    size_bytes: int
    checksum: str
    linked: bool = Field(description="true when the files stay where they were imported from")
    architecture: str = Field(
        description="read from the files at import, or set by the server for built-in "
        "models; empty when unknown"
    )
    has_chat_template: bool | None = Field(
        description="whether the tokenizer has a chat template, which chat completions "
        "need; null when unknown"
    )
    trained_context_length: int | None = Field(
        description="tokens of prompt and completion together that the model was trained "
        "on, read from the files at import; an endpoint's runtime_settings.context_length "
        "may not exceed it. Null when unknown: the files do not state it, or the "
        "checkpoint was imported before Berth recorded it"
    )
    created_at: datetime


class ModelOut(BaseModel):
    id: str
    name: str
    description: str
    ml_app: MLApp
    ml_app_name: str
    architecture: str
    field_of_application: str
    owner: Reference | None
    is_base: bool
    is_builtin: bool
    is_demo: bool
    sharing: ModelSharing
    tenant_id: str | None
    checkpoints: list[CheckpointOut] = Field(description="oldest first; the last is the default")
    created_at: datetime


class InstanceOut(BaseModel):
    id: str
    state: InstanceState
    restart_count: int
    generation: int
    pid: int | None
    address: str = Field(
        description="host:port where the instance's runtime listens, which the gateway "
        "forwards requests to; empty while no process runs"
    )
    started_at: datetime | None
    ready_at: datetime | None
    last_error: str
    start_blocked: bool = Field(
        description="the instance was not started because its model's files are "
        "unavailable or changed after import, and `last_error` gives the cause. Berth "
        "tries again with backoff, but each try fails the same way until someone imports "
        "the files again and moves the endpoint to them, or restores missing files. A "
        "wait for Live (`--wait`, `wait_for_state`) stops when an instance of the "
        "endpoint's current generation is blocked"
    )
    runtime: str = Field(
        description="library serving the model (transformers, vllm, llama.cpp, "
        "sentence-transformers, echo); empty until the instance is first ready"
    )
    runtime_note: str = Field(
        description="why a faster runtime was not used, for example 'vLLM not used: "
        "no CUDA GPU found'; often empty"
    )
    model_name: str = Field(
        description="model that the instance was last started with, which differs from "
        "the endpoint's model while a rolling update replaces the instance. For an "
        "instance that has not started yet, the endpoint's model if the instance is of "
        "the current generation. Empty when unknown: an instance of an earlier generation "
        "that Berth started before it recorded this"
    )
    checkpoint_name: str = Field(
        description="checkpoint of `model_name` that the instance was last started with, "
        "found the same way. Empty when unknown, and for an instance that a Berth version "
        "without this field started on files other than the endpoint's current checkpoint"
    )


_MAX_BATCH_SIZE_HELP = (
    "Text Embedding: maximum number of texts that an instance encodes together (default "
    f"{DEFAULT_MAX_BATCH_SIZE}). Text Generation: maximum number of queued requests with "
    "the same temperature and top_p that the transformers runtime generates together "
    f"(default {DEFAULT_GENERATION_MAX_BATCH_SIZE}); llama.cpp generates one request at a "
    "time and vLLM schedules its own batches"
)
_MAX_BATCH_WAIT_MS_HELP = (
    "Text Embedding only: time in ms that a batch waits for more texts after its first "
    f"text arrived while the encoder is idle (default {DEFAULT_MAX_BATCH_WAIT_MS:g}: encode at "
    "once; texts that arrive during encoding form the next batch)"
)
_RUNTIME_HELP = (
    "Text Generation only: library that runs the model. 'auto' (the default) uses vLLM "
    "when it is installed and a CUDA GPU is present, else transformers, and llama.cpp for "
    "GGUF checkpoints. 'llama.cpp' serves only GGUF checkpoints, 'transformers' and "
    "'vllm' only the others"
)

_MAX_COMPLETION_TOKENS_HELP = (
    "Text Generation only: maximum number of tokens that one request may generate, and "
    "the number that a request without max_tokens generates at most (default "
    f"{DEFAULT_MAX_COMPLETION_TOKENS}). The model's context length, prompt and completion "
    "together, bounds both"
)

_CONTEXT_LENGTH_HELP = (
    "Text Generation only: context window in tokens, prompt and completion together. "
    "null uses the model's trained context length, at most "
    f"{LLAMA_CPP_DEFAULT_CONTEXT_LENGTH} tokens on llama.cpp. A value above the trained "
    "length makes the instances fail to load"
)


class RuntimeSettingsOut(BaseModel):
    """The settings that instances run with, defaults included. A setting that the
    endpoint's ML App does not use is null."""

    max_batch_size: int | None = Field(description=_MAX_BATCH_SIZE_HELP)
    max_batch_wait_ms: float | None = Field(description=_MAX_BATCH_WAIT_MS_HELP)
    runtime: RequestedRuntime | None = Field(description=_RUNTIME_HELP)
    max_completion_tokens: int | None = Field(description=_MAX_COMPLETION_TOKENS_HELP)
    context_length: int | None = Field(description=_CONTEXT_LENGTH_HELP)


class RuntimeSettingsIn(StrictBody):
    """Runtime settings to set. A setting that is left out keeps its current value (its
    default on create), and null resets it to its default. A changed value replaces the
    running instances."""

    max_batch_size: StrictInt | None = Field(
        default=None, ge=1, le=MAX_BATCH_SIZE_LIMIT, description=_MAX_BATCH_SIZE_HELP
    )
    max_batch_wait_ms: float | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=MAX_BATCH_WAIT_MS_LIMIT,
        allow_inf_nan=False,
        description=_MAX_BATCH_WAIT_MS_HELP,
    )
    runtime: RequestedRuntime | None = Field(
        default=None, description=f"{_RUNTIME_HELP} (default {AUTO})"
    )
    # The service checks the range, so that the error names both bounds. The schema
    # still documents them.
    max_completion_tokens: StrictInt | None = Field(
        default=None,
        json_schema_extra={"minimum": 1, "maximum": MAX_COMPLETION_TOKENS_LIMIT},
        description=_MAX_COMPLETION_TOKENS_HELP,
    )
    context_length: StrictInt | None = Field(
        default=None,
        json_schema_extra={"minimum": MIN_CONTEXT_LENGTH, "maximum": MAX_CONTEXT_LENGTH},
        description=_CONTEXT_LENGTH_HELP,
    )


class EndpointOut(BaseModel):
    id: str
    name: str
    description: str
    project: Reference
    tenant_id: str
    tenant: Reference
    model: Reference
    checkpoint: Reference | None
    ml_app: MLApp
    ml_app_name: str
    instances: int = Field(description="number of instances asked for")
    ready_instances: int = Field(
        description="open instances that are Ready, of every generation. During a rolling "
        "update the old instances serve next to the new ones, so this can exceed `instances`"
    )
    instance_list: list[InstanceOut]
    state: EndpointState
    state_reason: str = Field(
        description="why the endpoint is in its state; when its tenant is disabled, this "
        "also says that the gateway rejects every request"
    )
    tenant_disabled: bool = Field(
        description="the endpoint's tenant is disabled, so the gateway rejects every request "
        "with 403 tenant_disabled whatever the state"
    )
    desired_state: DesiredState
    share_with_all_tenants: bool
    runtime_settings: RuntimeSettingsOut
    generation: int = Field(description="raised by each change that needs new instances")
    observed_generation: int = Field(
        description="the generation the state describes; below `generation` while the "
        "reconciler has not acted on the latest change"
    )
    observed_instances: int = Field(description="the instance count last reached")
    owner: Reference
    url: str
    openai_base_url: str
    version: int
    created_at: datetime
    updated_at: datetime


class EndpointCreate(StrictBody):
    project: str = Field(default="default", description="project name or ID")
    name: str = Field(description="endpoint name, unique in the project")
    model: str = Field(description="model name or ID from the Model Hub")
    instances: StrictInt = Field(default=1, description="number of instances to run")
    description: Description = Field(default="", max_length=2000)
    share_with_all_tenants: StrictBool = False
    runtime_settings: RuntimeSettingsIn | None = Field(
        default=None,
        description="batching of a Text Embedding endpoint or runtime of a Text Generation "
        "endpoint; a setting that the model's ML App does not use is rejected",
    )


class EndpointUpdate(StrictBody):
    description: DescriptionChange = Field(
        default=None, max_length=2000, description=_DESCRIPTION_CHANGE_HELP
    )
    instances: StrictInt | None = None
    model: str | None = None
    share_with_all_tenants: StrictBool | None = None
    runtime_settings: RuntimeSettingsIn | None = Field(
        default=None,
        description="settings to change, and null for a setting to reset it to its default; "
        "with a new model, the stored runtime must suit its checkpoint, or the update must "
        "set a runtime that does",
    )
    version: StrictInt | None = Field(
        default=None, description="the version you last read; a stale one gets 409"
    )
    force: StrictBool = Field(
        default=False,
        description="move to a checkpoint without a chat template even though the current "
        "checkpoint has one; without it such a move gets 409",
    )


class KeyOut(BaseModel):
    id: str
    key: str
    description: str
    status: KeyStatus
    is_first: bool
    owner: Reference
    created_at: datetime
    revoked_at: datetime | None


class KeyRevoked(KeyOut):
    already_revoked: bool = Field(
        description="true when the key was revoked before this request, which then changed "
        "nothing; revoked_at is the time of that first revocation"
    )


class KeyCreate(StrictBody):
    description: Description = Field(max_length=200)


class KeyUpdate(StrictBody):
    description: Description = Field(max_length=200)


class EndpointCreated(EndpointOut):
    first_key: str = Field(description="the endpoint's first API key (FirstKey)")


class TenantOut(BaseModel):
    id: str
    name: str
    disabled: bool
    created_at: datetime
    # The caller's role there; None for an OrgAdmin who is not a member.
    role: Role | None = None


class TenantCreate(StrictBody):
    name: str


class TenantUpdate(StrictBody):
    name: str | None = None
    disabled: StrictBool | None = None


class MembershipOut(BaseModel):
    user: Reference
    tenant: Reference
    role: Role


class MembershipSet(StrictBody):
    role: Role


class UserOut(BaseModel):
    id: str
    username: str
    is_org_admin: bool
    disabled: bool
    has_password: bool | None = Field(
        description="whether the user has a password for web sign-in; null for callers "
        "other than the user, OrgAdmins and TenantAdmins of the caller's active tenant"
    )
    default_tenant_id: str | None = Field(
        description="null when the user has no default tenant or when the caller cannot "
        "see it (then default_tenant_hidden is true)"
    )
    default_tenant_hidden: bool = Field(
        description="true when the user has a default tenant that the caller cannot see"
    )
    default_tenant_disabled: bool = Field(
        description="true when the default tenant is disabled, so the user acts in another "
        "enabled tenant, if any"
    )
    memberships: list[MembershipOut]
    created_at: datetime


class UserCreate(StrictBody):
    username: str
    password: str | None = Field(default=None, description="for web sign-in; 10 characters or more")
    is_org_admin: StrictBool = False
    tenant: str | None = Field(default=None, description="tenant to add the user to")
    role: Role = Role.USER
    create_key: StrictBool = Field(default=False, description="also create a platform API key")


class UserCreated(UserOut):
    api_key: str | None = Field(description="the new platform API key, shown only now")


class UserUpdate(StrictBody):
    username: str | None = None
    disabled: StrictBool | None = None
    is_org_admin: StrictBool | None = None
    password: str | None = Field(
        default=None,
        description="new password for web sign-in, 10 characters or more. It ends the "
        "user's web sessions, except the session that sends this request when users change "
        "their own password; platform API keys stay valid",
    )
    default_tenant: str | None = None


class PlatformKeyOut(BaseModel):
    id: str
    prefix: str
    description: str
    created_at: datetime
    revoked_at: datetime | None


class PlatformKeyRevoked(PlatformKeyOut):
    already_revoked: bool = Field(
        description="true when the key was revoked before this request, which then changed "
        "nothing; revoked_at is the time of that first revocation"
    )


class PlatformKeyCreate(StrictBody):
    description: Description = Field(default="", max_length=200)


class PlatformKeyCreated(PlatformKeyOut):
    key: str = Field(description="the key, shown only now")


class SignIn(StrictBody):
    username: str
    password: str
    tenant: str | None = None


class OrganizationOut(BaseModel):
    share_with_all_tenants: bool


class OrganizationUpdate(StrictBody):
    share_with_all_tenants: bool
    unshare_existing: StrictBool = Field(
        default=False,
        description="when turning sharing off, also move shared endpoints and models back "
        "to their own tenant",
    )


class SharingChange(OrganizationOut):
    message: str
    endpoints_shared: list[Reference] = Field(
        description="endpoints that were shared with all tenants when sharing was turned off"
    )
    models_shared: list[Reference]
    unshared: bool


class AuditEntryOut(BaseModel):
    id: str
    created_at: datetime
    actor: Reference | None
    tenant_id: str | None
    action: str
    resource_type: str
    resource_id: str
    resource_name: str
    source_address: str
    details: dict[str, object]


class ModelCreate(StrictBody):
    name: str
    ml_app: str = Field(description="ML App identifier or name, e.g. 'text-embedding'")
    path: str = Field(default="", description="folder of the model files on the Berth server")
    architecture: str = Field(default="", max_length=100)
    field_of_application: str = Field(default="", max_length=100)
    description: Description = Field(default="", max_length=2000)
    is_base: StrictBool = False
    sharing: ModelSharing = ModelSharing.PRIVATE


class ModelUpdate(StrictBody):
    description: DescriptionChange = Field(
        default=None, max_length=2000, description=_DESCRIPTION_CHANGE_HELP
    )
    sharing: ModelSharing | None = None


class ModelImport(StrictBody):
    path: str = Field(description="model folder, Hugging Face cache folder or .gguf file")
    name: str = Field(description="model name; an existing model of yours gets a new checkpoint")
    ml_app: str | None = Field(default=None, description="detected from the files when left out")
    is_base: StrictBool = False
    link: StrictBool = Field(
        default=False, description="leave the files in place instead of copying"
    )
    checkpoint: str = Field(default="main", description="name of the new checkpoint")
    description: Description = Field(default="", max_length=2000)
    sharing: ModelSharing = ModelSharing.PRIVATE
