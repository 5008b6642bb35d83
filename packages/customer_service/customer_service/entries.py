"""Knowledge-base entries: the forms FAQs, documents and chunks are given in, the stored `Entry`, and the
rules every id and field must pass before anything is written (`check_id`, `check_faq`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath, PureWindowsPath

from customer_service.tables import ID_LENGTH, KnowledgeEntry
from textcore import InvalidInput
from textcore.printable import check_printable

# of a chunk: "#" and 9 digits are the 10 characters a chunk id may add to its document's id
MAX_POSITION = 999_999_999
MAX_SOURCE = 2_000  # characters of a source (a URL), as the API takes a document's
RESERVED_IDS = frozenset({"search"})  # GET /v1/knowledge/<id> would reach the route, not the entry
# nor may an id hold a "." or ".." part between slashes: clients resolve them away in the URL's path


@dataclass(frozen=True, slots=True)
class FaqIn:
    """An FAQ as given to the knowledge base (ids must not contain '#', which marks chunk ids)."""

    id: str
    question: str
    answer: str
    category: str = ""
    source: str = ""  # the page it answers from, as clients may see it (a URL), for a citation to link to


@dataclass(frozen=True, slots=True)
class DocumentIn:
    """A document to store as chunks (`KnowledgeBase.put_document` / `put_many`)."""

    document_id: str
    title: str
    text: str
    format: str
    category: str = ""
    source: str = ""  # where it came from, as clients may see it (a file name, a URL)
    origin: str = ""  # the server file ingest read it from, never shown (`ingest`'s warnings compare it)


@dataclass(frozen=True, slots=True)
class ChunkIn:
    """A document chunk as it is stored (a row of `customer-service export`), to store again as it is: not
    cut from a document's text, so its id (f"{document_id}#{position}"), title and text come back as they
    were."""

    document_id: str
    position: int
    title: str
    text: str
    category: str = ""
    source: str = ""
    origin: str = ""


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored knowledge-base row: an FAQ or a document chunk."""

    id: str
    kind: str  # faq | chunk
    title: str  # the FAQ's question, or "Doc title > Section"
    question: str | None
    text: str  # the FAQ's answer or the chunk's text
    category: str
    document_id: str | None
    position: int
    source: str
    created_at: datetime
    updated_at: datetime


def entry_of(row: KnowledgeEntry) -> Entry:
    """The stored row as an `Entry`."""
    return Entry(
        row.id, row.kind, row.title, row.question, row.text, row.category, row.document_id, row.position,
        row.source, row.created_at, row.updated_at,
    )  # fmt: skip


def check_id(value: str, field: str, longest: int = ID_LENGTH) -> None:
    """Refuse an id a stored entry cannot have (`field` names it in the message)."""
    if not isinstance(value, str) or not value.strip() or len(value) > longest or "#" in value:
        raise InvalidInput(
            f"{field}: expected a non-empty id of at most {longest} characters, without '#'; "
            f"found {value!r:.80}"
        )
    if value in RESERVED_IDS:
        raise InvalidInput(
            f"{field}: {value!r} is reserved (GET /v1/knowledge/{value} is the API's own route); "
            "choose another id"
        )
    if any(part in (".", "..") for part in value.split("/")):
        raise InvalidInput(
            f"{field}: expected an id without '.' or '..' between slashes, which a URL path cannot carry "
            f"(GET /v1/knowledge/{{id}} would not reach the entry); found {value!r:.80}"
        )


def check_faq(row: FaqIn) -> None:
    """Refuse an FAQ with a bad id, an empty question or answer, or a bad field."""
    check_id(row.id, "id")
    for name in ("question", "answer"):
        value = getattr(row, name)
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput(f"{name}: expected non-empty text for FAQ {row.id!r}; found {value!r:.80}")
    if not isinstance(row.category, str) or len(row.category) > ID_LENGTH:
        raise InvalidInput(
            f"category: expected text of at most {ID_LENGTH} characters; found {row.category!r:.80}"
        )
    if not isinstance(row.source, str) or len(row.source) > MAX_SOURCE:
        raise InvalidInput(
            f"source: expected text of at most {MAX_SOURCE} characters; found {row.source!r:.80}"
        )
    for name in ("id", "question", "answer", "category", "source"):
        check_printable(getattr(row, name), f"{name} of FAQ {row.id!r:.80}")


def shown_source(source: str, document_id: str) -> str | None:
    """An absolute file path as a client may see a document's source: its trailing components that the
    document id ends with ("guides/travel.md" of /srv/kb/guides/travel.md), at least its file name; None for a
    URL or a name that is no absolute path, which is shown as it is.

    Ingest stored each document's server path as its source before it kept it apart (`origin`): a knowledge
    base or an export of then holds such paths, and a source given through the API may be one too."""
    if "://" in source:
        return None
    path: PurePosixPath | PureWindowsPath = PurePosixPath(source)
    if not path.is_absolute():
        path = PureWindowsPath(source)
        if not (path.drive and path.root):
            return None
    parts, named = path.parts[1:], PurePosixPath(document_id).parts
    shared = 1
    while shared < min(len(parts), len(named)) and parts[-shared - 1] == named[-shared - 1]:
        shared += 1
    return "/".join(parts[-shared:]) if parts else None
