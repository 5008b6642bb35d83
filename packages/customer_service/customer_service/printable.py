"""The rule for text the service stores: no control characters but tab, newline and carriage return.

The rule is the core's (`textcore.printable`), shared with the other services. Such text is refused, never
cleaned silently: the API answers 422 naming the field and where the character is, `customer-service ingest`
stops naming the file and its row or line.
"""

from __future__ import annotations

from textcore.printable import CONTROL, RULE, Printable, check_printable, control_character

__all__ = ["CONTROL", "RULE", "Printable", "check_printable", "control_character"]
