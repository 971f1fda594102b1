"""The one rule for names of endpoints, projects, models and tenants.

Names are trimmed, compared without regard to case, 1 to 63 characters long, start with
a letter or digit, and contain only letters, digits, '-', '_' and '.'. The same check
runs in the API, the CLI and the UI, so a name valid in one is valid in all.
"""

import re
import uuid

from berth.errors import InvalidInput

MAX_NAME_LENGTH = 63
# The web UI checks names in the browser with this pattern too, as a JavaScript RegExp.
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_NAME_PATTERN = re.compile(NAME_PATTERN)


def normalize_name(value: str, *, field: str = "name") -> str:
    """Return the trimmed name, or raise InvalidInput saying what is wrong with it."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    name = value.strip()
    if not name:
        raise InvalidInput(f"{field} must not be empty", field=field)
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"{field} '{name[:20]}...' is {len(name)} characters long; "
            f"use at most {MAX_NAME_LENGTH}",
            field=field,
        )
    if _looks_like_uuid(name):
        raise InvalidInput(
            f"{field} '{name}' has the form of an ID, which would make it unreachable "
            "by name; choose another",
            field=field,
        )
    if not _NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"{field} '{name}' is invalid: start with a letter or digit and use only "
            "letters, digits, '-', '_' and '.'",
            field=field,
        )
    return name


def name_key(name: str) -> str:
    """Return the form under which names are unique (case-insensitive)."""
    return name.strip().lower()


def _looks_like_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
