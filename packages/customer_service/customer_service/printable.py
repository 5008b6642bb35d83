"""The rule for text the service stores: no control characters but tab, newline and carriage return.

PostgreSQL text cannot hold NUL, and the other C0 and C1 controls (escape, bell, backspace, form feed, ...)
garble the terminals, logs and agent consoles that show the text. Tab, newline and carriage return are
ordinary in messages and documents. Such text is refused, never cleaned silently: the API answers 422 naming
the field and where the character is, `customer-service ingest` stops naming the file and its row or line.
"""

from __future__ import annotations

import re

from textcore import InvalidInput

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
