"""The Python SDK: a thin client of the management API.

    from berth.client import Client
    client = Client()                      # BERTH_SERVER / BERTH_API_KEY or the CLI profile
    endpoint = client.create_endpoint("default", "my-embeddings", "all-MiniLM-L6-v2")
    client.wait_for_state(endpoint["id"], {"Live"})

Every method returns the decoded JSON of the API's answer. Errors raise `ApiError`
with the status code and the server's message.
"""

import os
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

import httpx

from berth.cli.profile import load_profile

DEFAULT_SERVER = "http://127.0.0.1:8080"
Json = dict[str, Any]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


class ConnectionFailed(Exception):
    pass


class Client:
    def __init__(
        self,
        server: str | None = None,
        api_key: str | None = None,
        tenant: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        profile = load_profile() if not (server and api_key) else {}
        self.server = (
            server or os.environ.get("BERTH_SERVER") or profile.get("server") or DEFAULT_SERVER
        ).rstrip("/")
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
            raise ConnectionFailed(
                f"cannot reach the Berth server at {self.server}; is it running "
                "(`berth up`), and is BERTH_SERVER or --server right?"
            ) from exc
        except httpx.TimeoutException as exc:
            raise ConnectionFailed(
                f"the Berth server at {self.server} did not answer in time"
            ) from exc
        except httpx.UnsupportedProtocol as exc:
            raise ConnectionFailed(
                f"invalid server URL '{self.server}': it must start with http:// or https://"
            ) from exc
        except httpx.TransportError as exc:
            raise ConnectionFailed(
                f"the connection to the Berth server at {self.server} failed: {exc}"
            ) from exc
        if response.status_code >= 400:
            raise _api_error(response)
        try:
            return response.json()
        except ValueError as exc:
            raise ConnectionFailed(
                f"the server at {self.server} returned a response that is not JSON; "
                "is BERTH_SERVER or --server the URL of a Berth server?"
            ) from exc

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

    def list_models(self, limit: int = 100, offset: int = 0, **filters: Any) -> Json:
        params = {name: value for name, value in filters.items() if value is not None}
        return self._call("GET", "/models", params={**params, "limit": limit, "offset": offset})  # type: ignore[no-any-return]

    def get_model(self, model: str) -> Json:
        return self._call("GET", f"/models/{_segment(model)}")  # type: ignore[no-any-return]

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
    ) -> Json:
        body = {
            "project": project,
            "name": name,
            "model": model,
            "instances": instances,
            "description": description,
            "share_with_all_tenants": share_with_all_tenants,
        }
        return self._call("POST", "/endpoints", json=body)  # type: ignore[no-any-return]

    def get_endpoint(self, endpoint: str, project: str | None = None) -> Json:
        return self._call("GET", f"/endpoints/{_segment(endpoint)}", params=_project(project))  # type: ignore[no-any-return]

    def update_endpoint(self, endpoint: str, project: str | None = None, **changes: Any) -> Json:
        body = {name: value for name, value in changes.items() if value is not None}
        return self._call(  # type: ignore[no-any-return]
            "PATCH", f"/endpoints/{_segment(endpoint)}", params=_project(project), json=body
        )

    def stop_endpoint(self, endpoint: str, project: str | None = None) -> Json:
        return self._call("POST", f"/endpoints/{_segment(endpoint)}/stop", params=_project(project))  # type: ignore[no-any-return]

    def restart_endpoint(self, endpoint: str, project: str | None = None) -> Json:
        return self._call(
            "POST", f"/endpoints/{_segment(endpoint)}/restart", params=_project(project)
        )  # type: ignore[no-any-return]

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
        """Poll until the endpoint reaches one of `states`; raises TimeoutError or, when
        the endpoint fails while waiting for another state, ApiError.

        NOTE: until the reconciler acts on a restart or update, the state still reads as
        before, so this can return a stale Live or raise on a stale Failed. The CLI's
        `berth.cli.waiting` handles those cases.
        """
        wanted = set(states)
        deadline = time.monotonic() + timeout_s
        while True:
            info = self.get_endpoint(endpoint, project)
            if on_progress is not None:
                on_progress(info)
            if info["state"] in wanted:
                return info
            if info["state"] == "Failed":
                raise ApiError(409, "endpoint_failed", f"endpoint failed: {info['state_reason']}")
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"endpoint '{info['name']}' is still {info['state']} after {timeout_s:.0f} s"
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
