"""Answer templates: Jinja2 strings per intent name or FAQ id, rendered in Jinja2's immutable sandbox.

The file is TOML or JSON with one flat table of key -> template, for example (TOML)::

    greeting = "Hello! How can I help you today?"
    track_order = "Order {{ order_id }} can be tracked at https://example.com/track/{{ order_id }}."
    "faq-3f2a9c01d4e5" = '''Cards are blocked at once from the app: Cards > Block.'''

Templates are written by the operator; slot values come from customers and are only ever data: they are
passed to the template as variables, never compiled, so ``{{ 7*7 }}`` in a slot renders as those nine
characters. Autoescaping is off because answers are plain text, not HTML. A template that uses a slot the
caller did not supply renders as None (use ``{{ name | default("there") }}`` or ``{% if name is defined %}``
for optional slots), so the caller falls back to another way of answering rather than showing a hole.
"""

from __future__ import annotations

import json
import logging
import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from textcore import InvalidInput

logger = logging.getLogger(__name__)

MAX_KEY_LENGTH = 200  # the length of ids in the knowledge base
SUFFIXES = (".toml", ".json")
# Slots the bot fills itself: the customer's message and the best passage's answer and title. A caller's
# context never sets them, or a client could write the text the bot then states as the bank's answer.
RESERVED_SLOTS = frozenset({"message", "answer", "title"})


def _environment() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        autoescape=False, undefined=StrictUndefined, keep_trailing_newline=False
    )


class TemplateStore:
    """Compiled answer templates by key (an intent name or an FAQ id); safe to share between threads.

    Raises:
        InvalidInput: a key that is empty or too long, a value that is not a string, or a template with a
            syntax error (the message names the key and the line).
    """

    def __init__(self, templates: Mapping[str, object], *, source: str = "templates") -> None:
        environment = _environment()
        self._templates: dict[str, Template] = {}
        for key, value in templates.items():
            if not key.strip() or len(key) > MAX_KEY_LENGTH:
                raise InvalidInput(
                    f"{source}: expected template keys of 1 to {MAX_KEY_LENGTH} characters; found {key!r}"
                )
            if not isinstance(value, str):
                raise InvalidInput(
                    f"{source}: template {key!r}: expected a string; found {type(value).__name__} "
                    "(quote keys that contain dots in TOML)"
                )
            try:
                self._templates[key] = environment.from_string(value)
            except TemplateSyntaxError as exc:
                raise InvalidInput(f"{source}: template {key!r} line {exc.lineno}: {exc.message}") from exc

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TemplateStore:
        """Read and compile a TOML or JSON template file.

        Raises:
            InvalidInput: the file is missing, of another kind, malformed, or holds a bad template.
        """
        file = Path(path)
        if file.suffix.lower() not in SUFFIXES:
            raise InvalidInput(
                f"{file}: expected a template file ending in .toml or .json; found {file.name!r}"
            )
        if not file.is_file():
            raise InvalidInput(f"{file}: expected a readable template file; it does not exist")
        try:
            text = file.read_text(encoding="utf-8")
            data = tomllib.loads(text) if file.suffix.lower() == ".toml" else json.loads(text)
        except (UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInput(f"{file}: expected UTF-8 {file.suffix[1:].upper()} templates; {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidInput(f"{file}: expected a table of key -> template; found {type(data).__name__}")
        return cls(data, source=str(file))

    def __contains__(self, key: object) -> bool:
        return key in self._templates

    def __len__(self) -> int:
        return len(self._templates)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._templates))

    def render(self, key: str, slots: Mapping[str, str] | None = None) -> str | None:
        """The template `key` rendered with `slots` (surrounding whitespace stripped).

        Returns:
            The text, or None when there is no template for `key`, it renders empty, it needs a slot that was
            not given, or it fails (breaks a sandbox rule, divides by zero: logged as a warning).
        """
        template = self._templates.get(key)
        if template is None:
            return None
        values = {name: str(value) for name, value in (slots or {}).items()}
        try:
            text = template.render(values).strip()
        except (TemplateError, ArithmeticError, TypeError, ValueError) as exc:  # an operator's template bug
            logger.warning("template %r not rendered: %s", key, exc)
            return None
        return text or None
