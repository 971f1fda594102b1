"""Generation, hashing and encryption of platform and endpoint keys.

Keys are 32 random bytes, so a single SHA-256 is a safe look-up hash: there is nothing
to brute-force. The encrypted copy of an endpoint key uses Fernet (AES-128-CBC with an
HMAC) under the server secret, which lives in the home folder with mode 0600 unless
`BERTH_SECRET_KEY` provides it, for example from a secret store.
"""

import hashlib
import os
import secrets as _random
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from berth.errors import BerthError

PLATFORM_KEY_PREFIX = "berth_pk_"
ENDPOINT_KEY_PREFIX = "berth_ek_"
# The two places of the server secret, as error messages name them.
SECRET_SOURCES = "BERTH_SECRET_KEY, or server-secret.key in the Berth home folder when it is unset"


class ServerSecretError(BerthError):
    """The server secret is invalid, missing, or not the one that encrypted the stored keys."""

    status_code = 500
    code = "server_secret_mismatch"


def new_platform_key() -> str:
    return PLATFORM_KEY_PREFIX + _random.token_urlsafe(32)


def new_endpoint_key() -> str:
    return ENDPOINT_KEY_PREFIX + _random.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyVault:
    """Encrypts endpoint keys for storage and decrypts them for authorized readers."""

    def __init__(self, secret: bytes) -> None:
        self._fernet = Fernet(secret)

    @classmethod
    def from_file(cls, path: Path, configured: str | None = None) -> "KeyVault":
        """Use the `configured` secret (BERTH_SECRET_KEY) if given, else the one in `path`,
        which is created with mode 0600 on first use."""
        if configured:
            return cls(configured.encode("ascii"))
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(Fernet.generate_key())
        try:
            return cls(path.read_bytes().strip())
        except ValueError:
            raise ServerSecretError(
                f"the server secret in {path} is not a valid Fernet key; put back the file "
                "that encrypted the stored endpoint keys, or set BERTH_SECRET_KEY to that key"
            ) from None

    def encrypt(self, key: str) -> str:
        return self._fernet.encrypt(key.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """Return the key that `token` encrypts.

        Raises ServerSecretError when the token was encrypted under another secret.
        """
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise ServerSecretError(
                "a stored endpoint key cannot be decrypted, because the server secret "
                f"({SECRET_SOURCES}) differs from the one that encrypted it. An administrator "
                "must restore the secret that was in use when the key was created and "
                "restart Berth. Requests with the key still work"
            ) from None
