"""The Python SDK: a thin client of the management API.

    from berth.client import Client
    client = Client()                      # BERTH_SERVER / BERTH_API_KEY or the CLI profile
    endpoint = client.create_endpoint("default", "my-embeddings", "all-MiniLM-L6-v2")
    client.wait_for_state(endpoint["id"], {"Live"})

Every method returns the decoded JSON of the API's response, or None where the API
returns 204 No Content. Errors raise `ApiError` with the status code and the server's
message. Methods that name a user accept `me` for the caller.
"""

import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from berth.cli.profile import load_profile, profile_path
from berth.states import EndpointState, waits_for_capacity

DEFAULT_SERVER = "http://127.0.0.1:8080"
# The reconciler checks for free instance slots every 0.5 s and right after each change,
# so a Pending reason read just after a change can date from before it. A wait for Live
# gives up on an endpoint that lacks slots only once it has lacked them for this long.
CAPACITY_CONFIRM_S = 2.0
# How long a wait for an endpoint keeps retrying while the server cannot be reached, for
# example while it restarts, before it raises the connection error.
WAIT_RETRY_S = 30.0
# Seconds between those retries.
WAIT_RETRY_INTERVAL_S = 1.0
Json = dict[str, Any]

logger = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


class ConnectionFailed(Exception):
    pass


class ServerUnreachable(ConnectionFailed):
    """No response came from the server: it refused the connection, timed out or dropped it."""


class Client:
    def __init__(
        self,
        server: str | None = None,
        api_key: str | None = None,
        tenant: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        profile = load_profile() if not (server and api_key) else {}
        # Where the server URL came from, for the message when it cannot be reached.
        self._server_source = ""
        if not server and not os.environ.get("BERTH_SERVER"):
            if profile.get("server"):
                self._server_source = f"the CLI profile {profile_path()}"
            else:
                self._server_source = "the default"
        self.server = (
            server or os.environ.get("BERTH_SERVER") or profile.get("server") or DEFAULT_SERVER
        ).rstrip("/")
        _check_server_url(self.server)
        self.api_key = api_key or os.environ.get("BERTH_API_KEY") or profile.get("api_key")
        self.tenant = tenant or os.environ.get("BERTH_TENANT") or profile.get("tenant")
        headers = {}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if self.tenant:
            headers["X-Berth-Tenant"] = self.tenant
        self._http = httpx.Client(
            base_url=f"{self.server}/api/v1", headers=headers, timeout=timeout_s, trust_env=False
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise ServerUnreachable(self._unreachable_message()) from exc
        except httpx.TimeoutException as exc:
            raise ServerUnreachable(
                f"the Berth server at {self.server} did not respond in time"
            ) from exc
        except httpx.UnsupportedProtocol as exc:
            raise ConnectionFailed(
                f"invalid server URL '{self.server}': it must start with http:// or https://"
            ) from exc
        except httpx.TransportError as exc:
            raise ServerUnreachable(
                f"the connection to the Berth server at {self.server} failed: {exc}"
            ) from exc
        if response.status_code >= 400:
            raise _api_error(response)
        if response.status_code == 204:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ConnectionFailed(
                f"the server at {self.server} returned a response that is not JSON; "
                "is BERTH_SERVER or --server the URL of a Berth server?"
            ) from exc

    def _unreachable_message(self) -> str:
        message = f"cannot reach the Berth server at {self.server}"
        if self._server_source.startswith("the CLI profile"):
            return (
                f"{message}, the URL in {self._server_source}; is it running (`berth up`)? "
                "If the server moved, run `berth login --server URL`, or pass --server"
            )
        if self._server_source == "the default":
            return (
                f"{message}, the default URL; is it running (`berth up`)? For another "
                "server, run `berth login --server URL`, set BERTH_SERVER or pass --server"
            )
        return f"{message}; is it running (`berth up`), and is BERTH_SERVER or --server right?"

    # -- server --------------------------------------------------------------------

    def health(self) -> Json:
        return self._call("GET", "/health")  # type: ignore[no-any-return]

    def whoami(self) -> Json:
        return self._call("GET", "/whoami")  # type: ignore[no-any-return]

    # -- projects and models -------------------------------------------------------

    def list_projects(self, limit: int = 100, offset: int = 0) -> Json:
        return self._call("GET", "/projects", params={"limit": limit, "offset": offset})  # type: ignore[no-any-return]

    def create_project(self, name: str, description: str = "") -> Json:
        return self._call("POST", "/projects", json={"name": name, "description": description})  # type: ignore[no-any-return]

    def get_project(self, project: str) -> Json:
        return self._call("GET", f"/projects/{_segment(project)}")  # type: ignore[no-any-return]

    def update_project(
        self,
        project: str,
        *,
        name: str | None = None,
        description: str | None = None,
        version: int | None = None,
    ) -> Json:
        """Rename a project or change its description. An argument left as None changes nothing.

        The server rejects a name taken in the tenant and a new name for the `default`
        project with 409. With `version`, the version you last read, it also rejects the
        change with 409 when the project has changed since.
        """
        body = _without_none(name=name, description=description, version=version)
        return self._call("PATCH", f"/projects/{_segment(project)}", json=body)  # type: ignore[no-any-return]

    def delete_project(self, project: str) -> None:
        """Delete a project. The server rejects this with 409 while the project contains
        endpoints, stopped ones included, and always for the `default` project."""
        self._call("DELETE", f"/projects/{_segment(project)}")

    def list_models(self, limit: int = 100, offset: int = 0, **filters: Any) -> Json:
        params = {name: value for name, value in filters.items() if value is not None}
        return self._call("GET", "/models", params={**params, "limit": limit, "offset": offset})  # type: ignore[no-any-return]

    def get_model(self, model: str) -> Json:
        return self._call("GET", f"/models/{_segment(model)}")  # type: ignore[no-any-return]

    def register_model(
        self,
        name: str,
        ml_app: str,
        path: str = "",
        *,
        architecture: str = "",
        field_of_application: str = "",
        description: str = "",
        is_base: bool = False,
        sharing: str = "private",
    ) -> Json:
        """Add a model to the hub whose files are already at `path` on the server.

        The model belongs to the active tenant. `sharing` is private, tenant or all_tenants.
        """
        body = {
            "name": name,
            "ml_app": ml_app,
            "path": path,
            "architecture": architecture,
            "field_of_application": field_of_application,
            "description": description,
            "is_base": is_base,
            "sharing": sharing,
        }
        return self._call("POST", "/models", json=body)  # type: ignore[no-any-return]

    def import_model(
        self,
        path: str,
        name: str,
        *,
        ml_app: str | None = None,
        is_base: bool = False,
        link: bool = False,
        checkpoint: str = "main",
        description: str = "",
        sharing: str = "private",
        timeout_s: float = 1800.0,
    ) -> Json:
        """Import model files at `path` on the server: a Hugging Face folder, a folder in
        the Hugging Face cache layout or a GGUF file. An existing model of the same name
        gets a new checkpoint. Copying and checksumming large files takes a while, hence
        the long default timeout."""
        body = {
            "path": path,
            "name": name,
            "ml_app": ml_app,
            "is_base": is_base,
            "link": link,
            "checkpoint": checkpoint,
            "description": description,
            "sharing": sharing,
        }
        return self._call("POST", "/models/import", json=body, timeout=timeout_s)  # type: ignore[no-any-return]

    def update_model(
        self, model: str, *, description: str | None = None, sharing: str | None = None
    ) -> Json:
        body = _without_none(description=description, sharing=sharing)
        return self._call("PATCH", f"/models/{_segment(model)}", json=body)  # type: ignore[no-any-return]

    def delete_model(self, model: str) -> None:
        """Remove a model from the hub, with the files that import copied for it. The
        server rejects this while an endpoint uses it."""
        self._call("DELETE", f"/models/{_segment(model)}")

    def delete_checkpoint(self, model: str, checkpoint: str) -> None:
        """Remove one checkpoint of a model, with the files that import copied for it.
        The server rejects this while an endpoint uses the checkpoint, and for a model's
        only checkpoint."""
        self._call("DELETE", f"/models/{_segment(model)}/checkpoints/{_segment(checkpoint)}")

    # -- endpoints -----------------------------------------------------------------

    def list_endpoints(
        self,
        project: str | None = None,
        state: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Json:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if project:
            params["project"] = project
        if state:
            params["state"] = state
        return self._call("GET", "/endpoints", params=params)  # type: ignore[no-any-return]

    def create_endpoint(
        self,
        project: str,
        name: str,
        model: str,
        instances: int = 1,
        description: str = "",
        share_with_all_tenants: bool = False,
        *,
        max_batch_size: int | None = None,
        max_batch_wait_ms: float | None = None,
        runtime: str | None = None,
        max_completion_tokens: int | None = None,
        context_length: int | None = None,
    ) -> Json:
        """Create an endpoint, which deploys in the background.

        `max_batch_size` and `max_batch_wait_ms` set the batching of a Text Embedding
        endpoint. `max_batch_size` also caps the requests that a Text Generation endpoint
        generates together, `runtime` sets its library, `max_completion_tokens` the
        tokens that one of its requests may generate and `context_length` its context
        window, prompt and completion together. None keeps the server's default.
        """
        body: Json = {
            "project": project,
            "name": name,
            "model": model,
            "instances": instances,
            "description": description,
            "share_with_all_tenants": share_with_all_tenants,
        }
        settings = _without_none(
            max_batch_size=max_batch_size,
            max_batch_wait_ms=max_batch_wait_ms,
            runtime=runtime,
            max_completion_tokens=max_completion_tokens,
            context_length=context_length,
        )
        if settings:
            body["runtime_settings"] = settings
        return self._call("POST", "/endpoints", json=body)  # type: ignore[no-any-return]

    def get_endpoint(self, endpoint: str, project: str | None = None) -> Json:
        return self._call("GET", f"/endpoints/{_segment(endpoint)}", params=_project(project))  # type: ignore[no-any-return]

    def update_endpoint(
        self,
        endpoint: str,
        project: str | None = None,
        *,
        max_batch_size: int | None = None,
        max_batch_wait_ms: float | None = None,
        runtime: str | None = None,
        max_completion_tokens: int | None = None,
        context_length: int | None = None,
        reset_settings: Iterable[str] = (),
        **changes: Any,
    ) -> Json:
        """Change the fields given in `changes` (description, instances, model,
        share_with_all_tenants, version, force) and the runtime settings that are not None.
        `force=True` allows a move to a checkpoint without the current one's chat template.

        `reset_settings` names runtime settings (max_batch_size, max_batch_wait_ms,
        runtime, max_completion_tokens, context_length) to reset to their defaults; the
        server rejects an unknown name with 422.
        A changed model or runtime setting replaces the instances in a rolling update.
        Returns the endpoint as the server accepted the change (see `restart_endpoint`).
        """
        body: Json = {name: value for name, value in changes.items() if value is not None}
        settings = _without_none(
            max_batch_size=max_batch_size,
            max_batch_wait_ms=max_batch_wait_ms,
            runtime=runtime,
            max_completion_tokens=max_completion_tokens,
            context_length=context_length,
        )
        reset = list(reset_settings)
        both = sorted(settings.keys() & set(reset))
        if both:
            raise ValueError(f"runtime settings both set and reset: {', '.join(both)}")
        # The API resets a setting that is sent as null.
        settings.update(dict.fromkeys(reset))
        if settings:
            body["runtime_settings"] = settings
        return self._call(  # type: ignore[no-any-return]
            "PATCH", f"/endpoints/{_segment(endpoint)}", params=_project(project), json=body
        )

    def stop_endpoint(self, endpoint: str, project: str | None = None) -> Json:
        """Stop the endpoint's instances and return it as accepted (see `restart_endpoint`)."""
        return self._call("POST", f"/endpoints/{_segment(endpoint)}/stop", params=_project(project))  # type: ignore[no-any-return]

    def restart_endpoint(self, endpoint: str, project: str | None = None) -> Json:
        """Start a stopped or failed endpoint, or replace a running one's instances.

        Like `update_endpoint` and `stop_endpoint`, this returns the endpoint as the server
        accepted the change, before the reconciler acts on it. Its `instances`,
        `generation` and `desired_state` are the new ones, but `state`, `state_reason`
        and `instance_list` still describe the instances from before, so a restarted Live
        endpoint still reads Live. Follow the change with `wait_for_state`, which counts
        Live and Failed only once the reconciler has acted on the latest change.
        """
        return self._call(  # type: ignore[no-any-return]
            "POST", f"/endpoints/{_segment(endpoint)}/restart", params=_project(project)
        )

    def delete_endpoint(self, endpoint: str, project: str | None = None) -> Json:
        return self._call("DELETE", f"/endpoints/{_segment(endpoint)}", params=_project(project))  # type: ignore[no-any-return]

    def wait_for_state(
        self,
        endpoint: str,
        states: Iterable[str],
        project: str | None = None,
        timeout_s: float = 600.0,
        on_progress: Callable[[Json], None] | None = None,
        poll_s: float = 0.5,
    ) -> Json:
        """Poll until the endpoint reaches one of `states` and return it.

        Raises ValueError at once for a name that is not an endpoint state, and ApiError
        when the endpoint fails while waiting for another state. A wait
        for Live also raises ApiError once the endpoint has been Pending for lack of free
        instance slots for CAPACITY_CONFIRM_S; it stays Pending and deploys once slots
        free up. It raises ApiError (code `start_blocked`) at once when an instance of
        the current generation cannot start until someone acts, because its model's
        files are unavailable or changed after import (`start_blocked` in the API).
        Raises TimeoutError once `timeout_s` passes.

        Live and Failed count only once the reconciler has acted on the latest change
        (`observed_generation` caught up), so a state left from before a restart or an
        update is not taken for its outcome. A stop does not raise `generation`, so while
        the desired state is stopped only Stopping and Stopped count, and while it is
        running those two do not. An endpoint whose desired state is stopped raises
        ApiError at once unless Stopping or Stopped is among `states`, because it starts
        only when someone restarts it.

        While the server cannot be reached, each poll retries for up to WAIT_RETRY_S
        (or what is left of `timeout_s`, if less) and logs a warning, then raises
        ServerUnreachable.
        """
        wanted = set(states)
        known = {state.value for state in EndpointState}
        unknown = sorted(wanted - known)
        if unknown:
            raise ValueError(
                f"unknown endpoint state {', '.join(repr(name) for name in unknown)}; "
                f"wait for one of {', '.join(state.value for state in EndpointState)}"
            )
        deadline = time.monotonic() + timeout_s
        lacking_slots_since: float | None = None
        while True:
            retry_s = min(WAIT_RETRY_S, max(deadline - time.monotonic(), 0.0))
            info = get_endpoint_retrying(
                self, endpoint, project, retry_s=retry_s, on_retry=_log_retry
            )
            if on_progress is not None:
                on_progress(info)
            settled = _is_settled(info)
            if info["state"] in wanted and settled:
                return info
            if info["state"] == "Failed" and settled:
                raise ApiError(409, "endpoint_failed", f"endpoint failed: {info['state_reason']}")
            if info.get("desired_state") == "stopped" and not wanted & {"Stopping", "Stopped"}:
                raise _stopped_error(info, endpoint)
            blocked = blocked_instance(info)
            if "Live" in wanted and blocked is not None:
                raise ApiError(409, "start_blocked", blocked_start_message(info, blocked))
            now = time.monotonic()
            if "Live" in wanted and waits_for_capacity(info["state"], info["state_reason"]):
                if lacking_slots_since is None:
                    lacking_slots_since = now
                if now - lacking_slots_since >= CAPACITY_CONFIRM_S:
                    raise ApiError(
                        409,
                        "insufficient_capacity",
                        f"endpoint '{info['name']}' is Pending: {info['state_reason']}; it "
                        "deploys by itself once slots free up",
                    )
            else:
                lacking_slots_since = None
            if now >= deadline:
                raise TimeoutError(
                    f"endpoint '{info['name']}' is still {info['state']} after {timeout_s:.0f} s"
                    + (f" ({info['state_reason']})" if info["state_reason"] else "")
                )
            time.sleep(poll_s)

    # -- endpoint keys -------------------------------------------------------------

    def list_keys(self, endpoint: str, project: str | None = None) -> list[Json]:
        return self._call("GET", f"/endpoints/{_segment(endpoint)}/keys", params=_project(project))  # type: ignore[no-any-return]

    def add_key(self, endpoint: str, description: str, project: str | None = None) -> Json:
        return self._call(  # type: ignore[no-any-return]
            "POST",
            f"/endpoints/{_segment(endpoint)}/keys",
            params=_project(project),
            json={"description": description},
        )

    def get_key(self, endpoint: str, key: str, project: str | None = None) -> Json:
        return self._call(  # type: ignore[no-any-return]
            "GET", f"/endpoints/{_segment(endpoint)}/keys/{_segment(key)}", params=_project(project)
        )

    def edit_key(
        self, endpoint: str, key: str, description: str, project: str | None = None
    ) -> Json:
        return self._call(  # type: ignore[no-any-return]
            "PATCH",
            f"/endpoints/{_segment(endpoint)}/keys/{_segment(key)}",
            params=_project(project),
            json={"description": description},
        )

    def revoke_key(self, endpoint: str, key: str, project: str | None = None) -> Json:
        return self._call(  # type: ignore[no-any-return]
            "POST",
            f"/endpoints/{_segment(endpoint)}/keys/{_segment(key)}/revoke",
            params=_project(project),
        )

    # -- tenants and their members ---------------------------------------------------

    def list_tenants(self, limit: int = 100, offset: int = 0) -> Json:
        """List the caller's tenants, or every tenant for an OrgAdmin."""
        return self._call("GET", "/tenants", params={"limit": limit, "offset": offset})  # type: ignore[no-any-return]

    def get_tenant(self, tenant: str) -> Json:
        return self._call("GET", f"/tenants/{_segment(tenant)}")  # type: ignore[no-any-return]

    def create_tenant(self, name: str) -> Json:
        """Create a tenant with a `default` project; the caller becomes its TenantAdmin."""
        return self._call("POST", "/tenants", json={"name": name})  # type: ignore[no-any-return]

    def update_tenant(
        self, tenant: str, *, name: str | None = None, disabled: bool | None = None
    ) -> Json:
        body = _without_none(name=name, disabled=disabled)
        return self._call("PATCH", f"/tenants/{_segment(tenant)}", json=body)  # type: ignore[no-any-return]

    def list_members(self, tenant: str) -> list[Json]:
        return self._call("GET", f"/tenants/{_segment(tenant)}/members")  # type: ignore[no-any-return]

    def set_member(self, tenant: str, user: str, role: str) -> Json:
        """Add a user to a tenant with `role` (TenantAdmin or User), or change their role."""
        return self._call(  # type: ignore[no-any-return]
            "PUT",
            f"/tenants/{_segment(tenant)}/members/{_segment(user)}",
            json={"role": role},
        )

    def remove_member(self, tenant: str, user: str) -> None:
        self._call("DELETE", f"/tenants/{_segment(tenant)}/members/{_segment(user)}")

    # -- users -----------------------------------------------------------------------

    def list_users(self, limit: int = 100, offset: int = 0) -> Json:
        """List every user for an OrgAdmin, or the members of the active tenant."""
        return self._call("GET", "/users", params={"limit": limit, "offset": offset})  # type: ignore[no-any-return]

    def get_user(self, user: str = "me") -> Json:
        return self._call("GET", f"/users/{_segment(user)}")  # type: ignore[no-any-return]

    def create_user(
        self,
        username: str,
        *,
        password: str | None = None,
        is_org_admin: bool = False,
        tenant: str | None = None,
        role: str = "User",
        create_key: bool = False,
    ) -> Json:
        """Create a user; with `tenant`, also make them a member there with `role`.

        With `create_key`, the response's `api_key` contains a new platform API key, which
        the server shows only this once.
        """
        body: Json = {
            "username": username,
            "password": password,
            "is_org_admin": is_org_admin,
            "create_key": create_key,
        }
        if tenant:
            body["tenant"] = tenant
            body["role"] = role
        return self._call("POST", "/users", json=body)  # type: ignore[no-any-return]

    def update_user(
        self,
        user: str,
        *,
        username: str | None = None,
        disabled: bool | None = None,
        is_org_admin: bool | None = None,
        password: str | None = None,
        default_tenant: str | None = None,
    ) -> Json:
        """Change the fields that are not None.

        Renaming, disabling and the OrgAdmin flag need an OrgAdmin. Users may set their
        own password and default tenant. A new password ends the user's web sessions, but
        their platform API keys, this client's key included, keep working.
        """
        body = _without_none(
            username=username,
            disabled=disabled,
            is_org_admin=is_org_admin,
            password=password,
            default_tenant=default_tenant,
        )
        return self._call("PATCH", f"/users/{_segment(user)}", json=body)  # type: ignore[no-any-return]

    # -- platform API keys -------------------------------------------------------------

    def list_platform_keys(self, user: str = "me") -> list[Json]:
        """List a user's platform API keys: ID, prefix and description, never the key."""
        return self._call("GET", f"/users/{_segment(user)}/keys")  # type: ignore[no-any-return]

    def create_platform_key(self, description: str = "", user: str = "me") -> Json:
        """Create a platform API key; the response's `key` is the only copy the server returns."""
        return self._call(  # type: ignore[no-any-return]
            "POST", f"/users/{_segment(user)}/keys", json={"description": description}
        )

    def revoke_platform_key(self, key_id: str, user: str = "me") -> Json:
        return self._call(  # type: ignore[no-any-return]
            "POST", f"/users/{_segment(user)}/keys/{_segment(key_id)}/revoke"
        )

    # -- organization and audit log ----------------------------------------------------

    def get_organization(self) -> Json:
        return self._call("GET", "/organization")  # type: ignore[no-any-return]

    def set_sharing(self, enabled: bool, unshare_existing: bool = False) -> Json:
        """Turn sharing with all tenants on or off (OrgAdmin only).

        Turning it off leaves shared endpoints and models shared unless `unshare_existing`
        is true. The response lists them either way.
        """
        body = {"share_with_all_tenants": enabled, "unshare_existing": unshare_existing}
        return self._call("PATCH", "/organization", json=body)  # type: ignore[no-any-return]

    def list_audit(
        self,
        limit: int = 100,
        offset: int = 0,
        *,
        action: str | None = None,
        actor: str | None = None,
        resource_id: str | None = None,
        resource_type: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        tenant: str | None = None,
    ) -> Json:
        """List audit entries, newest first.

        `action` matches as a prefix ("endpoint." for every endpoint action). `since` is
        inclusive and `until` exclusive; the server reads a time without a zone as UTC.
        `tenant` (OrgAdmins only) is a tenant name or ID, or "all".
        """
        params = _without_none(
            action=action,
            actor=actor,
            resource_id=resource_id,
            resource_type=resource_type,
            since=since.isoformat() if isinstance(since, datetime) else since,
            until=until.isoformat() if isinstance(until, datetime) else until,
            tenant=tenant,
        )
        return self._call(  # type: ignore[no-any-return]
            "GET", "/audit", params={**params, "limit": limit, "offset": offset}
        )


# Paths of Berth's own routes, which a server URL must not end with.
_ROUTE_SUFFIX = re.compile(r"/(api/v1|endpoints/[^/]+(/v1)?)/?$")


def _check_server_url(server: str) -> None:
    """Raise ConnectionFailed for the URL of the API or of an endpoint given as the server.

    The client adds /api/v1 itself, so such a URL would reach no route and every
    request would fail with a bare 404.
    """
    match = _ROUTE_SUFFIX.search(urlsplit(server).path)
    if match is None:
        return
    suffix = match.group(0)
    base = server.removesuffix(suffix)
    raise ConnectionFailed(
        f"invalid server URL '{server}': pass the base URL of the Berth server, "
        f"without {suffix}, such as {base}"
    )


def _without_none(**values: Any) -> Json:
    return {name: value for name, value in values.items() if value is not None}


def _segment(value: str) -> str:
    return quote(value.strip(), safe="")


def _project(project: str | None) -> dict[str, str]:
    return {"project": project} if project else {}


def _api_error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    message = error.get("message") or f"HTTP {response.status_code}: {response.text[:200]}"
    return ApiError(
        response.status_code, error.get("code", "http_error"), message, error.get("field")
    )


def _log_retry(error: ServerUnreachable, retry_s: float) -> None:
    logger.warning("%s; retrying for up to %g s", error, retry_s)


def blocked_instance(endpoint: Json) -> Json | None:
    """Return an instance of the endpoint's current generation whose start is blocked
    until someone acts (`start_blocked`), or None.

    Instances of earlier generations are left out, because a change that replaces them,
    such as moving the endpoint to a new checkpoint, is the fix.
    """
    for instance in endpoint["instance_list"]:
        if instance.get("start_blocked") and instance["generation"] == endpoint["generation"]:
            return instance  # type: ignore[no-any-return]
    return None


def blocked_start_message(endpoint: Json, instance: Json) -> str:
    """Describe why a wait for Live stopped at `instance` (see `blocked_instance`)."""
    return (
        f"stopped waiting: endpoint '{endpoint['name']}' cannot start instance "
        f"{instance['id'][:8]}, and each retry fails the same way until the cause is "
        f"fixed: {instance['last_error']}"
    )


def _is_settled(info: Json) -> bool:
    """Tell whether the endpoint's state is what the reconciler reached for its latest
    change, and not a state left from before that change."""
    state = info["state"]
    if info.get("desired_state") == "stopped":
        # A stop keeps `generation`, so only the state shows whether the reconciler acted
        # on it. The reconciler sets Stopping or Stopped, so any other state predates it.
        return state in ("Stopping", "Stopped")
    if state in ("Stopping", "Stopped"):
        # Left from before a restart, which the reconciler has yet to start.
        return False
    if state not in ("Live", "Failed"):
        return True
    if info.get("observed_generation") != info.get("generation"):
        return False
    return state == "Failed" or info.get("observed_instances") == info["instances"]


def _stopped_error(info: Json, endpoint: str) -> ApiError:
    name = info["name"]
    if info["state"] == "Stopped":
        status = "is Stopped and stays so"
    else:
        status = f"is being stopped (state {info['state']}) and stays Stopped"
    return ApiError(
        409,
        "endpoint_stopped",
        f"endpoint '{name}' {status} until it is started; start it with "
        f"restart_endpoint('{endpoint}') or `berth endpoint restart {name}`, then wait again",
    )


def get_endpoint_retrying(
    client: "Client",
    endpoint: str,
    project: str | None = None,
    retry_s: float | None = None,
    on_retry: Callable[[ServerUnreachable, float], None] | None = None,
) -> Json:
    """Return the endpoint, retrying while the server cannot be reached.

    Retries for up to `retry_s` seconds (WAIT_RETRY_S by default), then raises the last
    ServerUnreachable. `on_retry` gets the error and `retry_s` once, at the first failure.
    """
    budget_s = WAIT_RETRY_S if retry_s is None else retry_s
    give_up_at: float | None = None
    while True:
        try:
            return client.get_endpoint(endpoint, project)
        except ServerUnreachable as exc:
            now = time.monotonic()
            if give_up_at is None:
                give_up_at = now + budget_s
                if on_retry is not None and budget_s > 0:
                    on_retry(exc, budget_s)
            if now >= give_up_at:
                raise
            time.sleep(min(WAIT_RETRY_INTERVAL_S, give_up_at - now))
