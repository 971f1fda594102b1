"""Request and response bodies of the management API."""

from datetime import datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from berth.states import DesiredState, EndpointState, InstanceState, KeyStatus, MLApp

Item = TypeVar("Item")


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
    tenant: Reference


class ProjectOut(BaseModel):
    id: str
    name: str
    description: str
    tenant: Reference
    owner: Reference
    created_at: datetime


class ProjectCreate(StrictBody):
    name: str = Field(description="project name, unique in the tenant")
    description: str = Field(default="", max_length=2000)


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
    created_at: datetime


class InstanceOut(BaseModel):
    id: str
    state: InstanceState
    restart_count: int
    generation: int
    pid: int | None
    started_at: datetime | None
    ready_at: datetime | None
    last_error: str


class EndpointOut(BaseModel):
    id: str
    name: str
    description: str
    project: Reference
    tenant_id: str
    model: Reference
    ml_app: MLApp
    ml_app_name: str
    instances: int = Field(description="number of instances asked for")
    ready_instances: int
    instance_list: list[InstanceOut]
    state: EndpointState
    state_reason: str
    desired_state: DesiredState
    share_with_all_tenants: bool
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
    instances: int = Field(default=1, description="number of instances to run")
    description: str = Field(default="", max_length=2000)
    share_with_all_tenants: bool = False


class EndpointUpdate(StrictBody):
    description: str | None = Field(default=None, max_length=2000)
    instances: int | None = None
    model: str | None = None
    share_with_all_tenants: bool | None = None
    version: int | None = Field(
        default=None, description="the version you last read; a stale one gets 409"
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


class KeyCreate(StrictBody):
    description: str = Field(max_length=200)


class KeyUpdate(StrictBody):
    description: str = Field(max_length=200)


class EndpointCreated(EndpointOut):
    first_key: str = Field(description="the endpoint's first API key (FirstKey)")
