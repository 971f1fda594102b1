"""Server settings, read once at start-up from `BERTH_*` environment variables.

Values that would make the server unsafe or unable to run are rejected here, instead of
failing later in a request. The validators' messages leave out the setting's name,
because `berth up` puts the environment variable or option that set it in front.
"""

import math
import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import annotated_types
from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_HOME = Path.home() / ".berth"
MIN_ADMIN_KEY_LENGTH = 16
# The API's bodies are small JSON objects: model folders are sent as paths, not files.
DEFAULT_MAX_API_REQUEST_BYTES = 1024 * 1024
ANY_ORIGIN = "*"
_DEFAULT_PORTS = {"http": 80, "https": 443}
GENERATE_SECRET_KEY_COMMAND = (
    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)


def default_capacity() -> int:
    """Instance slots when none are configured: two per CPU core, at least four."""
    return max(4, 2 * (os.cpu_count() or 1))


def range_text(field: FieldInfo) -> str:
    """Describe the bounds of a number field, such as "greater than 0 and at most 3600"."""
    bounds = []
    for constraint in field.metadata:
        if isinstance(constraint, annotated_types.Gt):
            bounds.append(f"greater than {constraint.gt}")
        elif isinstance(constraint, annotated_types.Ge):
            bounds.append(f"at least {constraint.ge}")
        elif isinstance(constraint, annotated_types.Lt):
            bounds.append(f"less than {constraint.lt}")
        elif isinstance(constraint, annotated_types.Le):
            bounds.append(f"at most {constraint.le}")
    return " and ".join(bounds)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BERTH_", extra="ignore")

    home: Path = Field(
        default=DEFAULT_HOME, description="folder for the database, secrets and logs"
    )
    host: str = "127.0.0.1"
    # Port 0 would let the system choose a port, but the CLI profile and endpoint URLs need
    # the port that clients connect to.
    port: int = Field(default=8080, ge=1, le=65535)
    public_url: str | None = Field(
        default=None,
        description="URL at which clients reach Berth, such as the address of a reverse "
        "proxy in front of it; endpoint URLs start with it (default: http://HOST:PORT)",
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; SQLite in the home folder when unset"
    )
    admin_key: str | None = Field(
        default=None, description="platform key of the organization admin, used on first start"
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Fernet key that encrypts the stored endpoint keys (default: the key in "
        "server-secret.key in the home folder)",
    )
    capacity: int = Field(default_factory=default_capacity, ge=1, le=10_000)
    max_instances_per_endpoint: int = Field(default=16, ge=1, le=1_000)
    max_request_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_api_request_bytes: int = Field(
        default=DEFAULT_MAX_API_REQUEST_BYTES,
        ge=1024,
        description="largest request body of the management API and the web UI, in bytes",
    )
    upstream_timeout_s: float = Field(default=300.0, gt=0)
    header_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="seconds that a connection gets to send a complete request head",
    )
    max_header_bytes: int = Field(
        default=64 * 1024, ge=1024, description="largest request head (request line and headers)"
    )
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="seconds that a request body may pause between two reads",
    )
    reconcile_interval_s: float = Field(default=0.5, gt=0, le=60)
    sync_interval_s: float = Field(
        default=0.2, gt=0, le=0.9, description="how often a gateway reloads keys and routes"
    )
    instance_start_timeout_s: float = Field(default=300.0, gt=0)
    log_json: bool = False
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="gateway and API worker processes; the reconciler runs once, in the "
        "supervising process, when there are more than one",
    )
    drain_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="seconds that requests in flight on a removed instance (scale-down, "
        "model change, stop) get to finish before the instance is killed",
    )
    delete_drain_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="the same as drain_timeout_s for the instances of a deleted endpoint",
    )
    health_interval_s: float = Field(
        default=1.0, gt=0, le=60, description="seconds between health checks of an instance"
    )
    health_timeout_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="seconds an instance gets to respond to a health check",
    )
    unhealthy_after: int = Field(
        default=3,
        ge=1,
        le=100,
        description="failed health checks in a row after which an instance is restarted",
    )
    stall_timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="seconds without response data, while requests are in flight, after "
        "which an instance counts as hung; unset means upstream_timeout_s",
    )
    no_instance_wait_s: float = Field(
        default=10.0,
        ge=0,
        le=600,
        description="seconds a request waits for a ready instance of a Live endpoint "
        "before the gateway answers 503",
    )
    shutdown_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="on SIGTERM, seconds that requests in flight get to finish before the "
        "server stops",
    )

    # NoDecode: the environment variable is a comma-separated list, not JSON.
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="origins (scheme://host[:port]) whose browser apps may call the "
        "gateway, or * for any origin; empty means that the gateway sends no CORS headers",
    )

    @field_validator("*", mode="before")
    @classmethod
    def _reject_non_finite_number(cls, value: Any, info: ValidationInfo) -> Any:
        """Reject NaN and infinity for a float setting, naming the accepted range.

        Without this check, pydantic 2.14 reports NaN as breaking the first bound that it
        compares it with, and it accepts infinity for a setting without an upper bound.
        """
        assert info.field_name is not None
        field = cls.model_fields[info.field_name]
        if field.annotation not in (float, float | None) or value is None:
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            # Pydantic rejects it as not a number.
            return value
        if not math.isfinite(number):
            accepted = range_text(field)
            message = "Input should be a finite number"
            if accepted:
                message += " {accepted}"
            raise PydanticCustomError("finite_number", message, {"accepted": accepted})
        return value

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("admin_key")
    @classmethod
    def _strong_admin_key(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if len(value) < MIN_ADMIN_KEY_LENGTH:
            raise ValueError(
                f"the key is {len(value)} characters long, but at least "
                f"{MIN_ADMIN_KEY_LENGTH} are required. Set it to a long random value such "
                "as the output of `openssl rand -hex 24`"
            )
        return value

    @field_validator("public_url")
    @classmethod
    def _valid_public_url(cls, value: str | None) -> str | None:
        # An empty value counts as unset, so `BERTH_PUBLIC_URL=` uses the listen address.
        text = (value or "").strip()
        if not text:
            return None
        problem = _public_url_problem(text)
        if problem:
            raise ValueError(
                f"it must be the http:// or https:// URL at which clients reach Berth, but "
                f"{problem}. Set it to a URL such as https://berth.example.com or "
                "https://example.com/berth, or leave it unset to use http://HOST:PORT"
            )
        # Endpoint paths are appended with their own slash.
        return text.rstrip("/")

    @field_validator("secret_key")
    @classmethod
    def _valid_secret_key(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty value counts as unset, so `BERTH_SECRET_KEY=` uses the key file.
        text = value.get_secret_value().strip() if value is not None else ""
        if not text:
            return None
        try:
            Fernet(text)
        except ValueError:
            # The message must not repeat the value, which may be a real key with a typo.
            raise ValueError(
                "the value is not a valid Fernet key, which is 32 random bytes in URL-safe "
                "base64 (44 characters). Set it to the key that encrypted the stored "
                "endpoint keys, or generate a new key for a new home folder with "
                f"`{GENERATE_SECRET_KEY_COMMAND}`"
            ) from None
        return SecretStr(text)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _valid_cors_origins(cls, value: Any) -> Any:
        # Checked before pydantic converts the value, so that errors quote the text as set.
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, list | tuple):
            # Pydantic rejects it as not a list.
            return value
        if ANY_ORIGIN in value and len(value) > 1:
            raise ValueError(
                "'*' allows every origin, so no other origin may be listed with it. Set it "
                "to * alone, or to a comma-separated list of origins"
            )
        origins: list[str] = []
        for origin in value:
            if origin == ANY_ORIGIN:
                origins.append(origin)
                continue
            problem = _origin_problem(origin) if isinstance(origin, str) else "it is no text"
            if problem:
                raise ValueError(
                    f"{origin!r} is not a valid origin because {problem}. Set it to a "
                    "comma-separated list of origins such as "
                    "https://app.example.com,http://localhost:3000, to * for any origin, or "
                    "to nothing to turn CORS off"
                )
            origins.append(_normalize_origin(origin))
        return tuple(dict.fromkeys(origins))

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        # An empty value counts as unset, which means SQLite in the home folder.
        if value and not value.startswith(("sqlite", "postgresql")):
            # Only the scheme is shown, because the rest may contain a password.
            raise ValueError(
                f"the URL scheme '{value.split(':', 1)[0]}' is not supported. "
                "Use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
            )
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'berth.db'}"

    @cached_property
    def models_dir(self) -> Path:
        return self.home / "models"

    @cached_property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @cached_property
    def secret_file(self) -> Path:
        return self.home / "server-secret.key"

    @property
    def secret_key_text(self) -> str | None:
        """The configured secret key, or None to use the one in `secret_file`."""
        return self.secret_key.get_secret_value() if self.secret_key is not None else None

    @property
    def resolved_stall_timeout_s(self) -> float:
        # A request without response data for longer than the gateway waits has failed
        # already, so this default never declares an instance hung that could still respond.
        return self.stall_timeout_s or self.upstream_timeout_s

    @property
    def drain_grace_s(self) -> float:
        """Seconds between taking an instance out of routing and sending it SIGTERM.

        Every gateway process reloads its routes every sync_interval_s. A refresh that
        started just before the change misses it, so a gateway can route to the instance
        for up to two intervals plus the time its queries take.
        """
        return 2 * self.sync_interval_s + 0.6

    @property
    def local_url(self) -> str:
        """Return the URL of Berth's own listen address, for clients on this machine."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in host:
            # An IPv6 address goes in brackets in a URL (RFC 3986).
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def advertised_url(self) -> str:
        """The base of the endpoint URLs that Berth returns and prints: BERTH_PUBLIC_URL
        when it is set, else `local_url`."""
        return self.public_url or self.local_url


def _public_url_problem(url: str) -> str:
    """Describe what makes `url` unfit as BERTH_PUBLIC_URL, or return "" when it is fit."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return "it does not start with http:// or https://"
    if not parts.hostname:
        return "it names no host"
    if "?" in url or "#" in url:
        return "it has a query or a fragment (a part after '?' or '#')"
    if parts.username is not None or parts.password is not None:
        return "it contains a user name or password, which every endpoint URL would show"
    try:
        # urllib raises ValueError for a port that is not a number from 0 to 65535.
        _port = parts.port
    except ValueError:
        return "its port is not a number from 0 to 65535"
    return ""


def _origin_problem(origin: str) -> str:
    """Describe what makes `origin` unfit as an entry of BERTH_CORS_ORIGINS, or return ""."""
    if not origin.isascii() or not origin.isprintable() or " " in origin:
        return "it contains spaces or characters other than printable ASCII"
    parts = urlsplit(origin)
    if parts.scheme.lower() not in _DEFAULT_PORTS:
        return "it does not start with http:// or https://"
    if not parts.hostname:
        return "it names no host"
    if parts.username is not None or parts.password is not None:
        return "it contains a user name or password"
    if parts.path or "?" in origin or "#" in origin:
        return (
            "it has something after the host and port (a path, a trailing slash, a query "
            "or a fragment), which a browser never sends in an Origin header"
        )
    try:
        # urllib raises ValueError for a port that is not a number from 0 to 65535.
        _port = parts.port
    except ValueError:
        return "its port is not a number from 0 to 65535"
    if parts.netloc.endswith(":"):
        return "it has a ':' with no port after it"
    return ""


def _normalize_origin(origin: str) -> str:
    """Write `origin` as browsers send it: scheme and host in lower case, and no port
    when it is the scheme's default."""
    parts = urlsplit(origin)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is None or parts.port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{parts.port}"
