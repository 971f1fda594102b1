"""The CLI profile: server URL, platform API key and tenant, in the user's config folder."""

import json
import os
from pathlib import Path
from typing import Any


def profile_path() -> Path:
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "berth" / "profile.json"


def load_profile() -> dict[str, Any]:
    path = profile_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        raise RuntimeError(f"cannot read the CLI profile {path}: {exc}; fix or delete it") from exc
    return data if isinstance(data, dict) else {}


def save_profile(server: str, api_key: str, tenant: str | None = None) -> Path:
    """Write the profile with mode 0600, since it contains a platform key."""
    path = profile_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data: dict[str, Any] = {"server": server, "api_key": api_key}
    if tenant:
        data["tenant"] = tenant
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(data, handle, indent=2)
    os.chmod(temporary, 0o600)
    temporary.replace(path)
    return path


def save_profile_if_missing(server: str, api_key: str) -> Path | None:
    if profile_path().exists():
        return None
    return save_profile(server, api_key)
