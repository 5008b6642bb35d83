"""The rule for text a service stores: no control characters but tab, newline and carriage return.

PostgreSQL text cannot hold NUL, so a NUL that SQLite would store is refused there by the database; and
the other C0 and C1 controls (escape, bell, backspace, form feed, ...) garble the terminals, logs and
consoles that show the text. Tab, newline and carriage return are ordinary in messages and documents. Such
text is refused, never cleaned silently, and the same way on every database: request schemas mark their
stored strings with `Printable` (a 422 naming the field and where the character is), other callers use
`check_printable`.
"""

from __future__ import annotations

import re

from pydantic import BeforeValidator

from textcore.errors import InvalidInput

CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # C0 and C1 but tab, newline, CR
RULE = "expected text without control characters other than tab, newline and carriage return"


def control_character(text: str) -> str | None:
    """Where `text`'s first control character is, e.g. "U+0000 (NUL) at character 6 (line 2, column 3)";
    None when it has none. Positions count from 1; line and column are given for text of several lines."""
    found = CONTROL.search(text)
    if found is None:
        return None
    code, start = ord(found.group()), found.start()
    name = " (NUL)" if code == 0 else ""
    where = f"at character {start + 1}"
    if "\n" in text:
        line, line_start = text.count("\n", 0, start) + 1, text.rfind("\n", 0, start) + 1
        where += f" (line {line}, column {start - line_start + 1})"
    return f"U+{code:04X}{name} {where}"


def check_printable(text: str, field: str) -> None:
    """Refuse `text` when it holds a control character other than tab, newline and carriage return.

    Args:
        text: The text to store.
        field: What it is, for the message (e.g. "answer of FAQ 'card'").

    Raises:
        InvalidInput: Naming the field, the character and its position.
    """
    if (found := control_character(text)) is not None:
        raise InvalidInput(f"{field}: {RULE}; found {found}")


def _printable(value: object) -> object:
    """`value` unchanged unless it is text holding a control character other than tab, newline and carriage
    return (a value that is no text is left to the type's own check)."""
    if isinstance(value, str) and (found := control_character(value)) is not None:
        raise ValueError(f"{RULE}; found {found}")
    return value


# In `Annotated[str, StringConstraints(...), Printable]`: checked as sent, before surrounding whitespace is
# stripped, so nothing is dropped and positions are those of the text sent.
Printable = BeforeValidator(_printable)
