"""The rule for free-text descriptions of endpoints, keys, projects and models.

The CLI prints descriptions in tables, so a description may not contain control
characters. A line break or tab breaks a table row, and an escape sequence would reach
the terminal of everyone who lists it.
"""

import re

# C0 controls (U+0000 to U+001F), DEL (U+007F) and C1 controls (U+0080 to U+009F). Also
# the line and paragraph separators (U+2028, U+2029), where some terminals and editors
# break lines. Also the bidirectional embeddings, overrides and isolates (U+202A to
# U+202E, U+2066 to U+2069), which reorder the text shown after them.
CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f\u2028-\u202e\u2066-\u2069]")

# For str.translate on JSON text: \u escapes of the characters above that JSON writes raw.
# JSON escapes those below U+0020 itself, and outside strings it has none of them, so the
# JSON stays valid and its values unchanged.
JSON_ESCAPES = {
    code: f"\\u{code:04x}"
    for code in [*range(0x7F, 0xA0), *range(0x2028, 0x202F), *range(0x2066, 0x206A)]
}


def control_character_problem(value: str) -> str | None:
    """Return a message about the first control character in `value`, or None if none."""
    match = CONTROL_CHARACTER.search(value)
    if match is None:
        return None
    code = ord(match.group())
    if code in (0x2028, 0x2029):
        kind = "line or paragraph separator"
    elif code >= 0x202A:
        kind = "bidirectional control character"
    else:
        kind = "control character"
    return (
        f"contains the {kind} U+{code:04X} at position {match.start() + 1}; write the "
        "description as plain text on one line, without tabs, line breaks or escape "
        "sequences"
    )


def check_description(value: str) -> str:
    """Return `value` unchanged, or raise ValueError when it contains a control character.

    Pydantic turns the ValueError into a 422 that names the field.
    """
    problem = control_character_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value
