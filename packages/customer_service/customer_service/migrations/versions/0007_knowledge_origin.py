"""knowledge: a chunk's server file apart (`origin`), its `source` as clients see it (no server path)

Ingest stored a document's absolute server path as its chunks' `source`, which `GET /v1/knowledge` showed to
every client. The path moves to `origin`, which ingest's warnings compare and no response shows, and
`source` keeps the part of it the operator named: the trailing path components it shares with the document
id ("guides/travel.md" for /srv/kb/guides/travel.md), at least the file name. URLs and names that are no
absolute path stay as they are.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 03:10:00
"""

from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_KNOWLEDGE = sa.table(
    "knowledge",
    sa.column("kind", sa.String),
    sa.column("document_id", sa.String),
    sa.column("source", sa.Text),
    sa.column("origin", sa.Text),
)


def _shown(source: str, document_id: str) -> str | None:
    """The source without the server's folders, or None when it is no absolute file path (kept as it is).
    (A copy of `customer_service.entries.shown_source` as it was at this revision.)"""
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


def upgrade() -> None:
    with op.batch_alter_table("knowledge", schema=None) as batch_op:
        batch_op.add_column(sa.Column("origin", sa.Text(), nullable=False, server_default=""))
    bind = op.get_bind()
    stored = bind.execute(
        sa.select(_KNOWLEDGE.c.document_id, _KNOWLEDGE.c.source)
        .where(_KNOWLEDGE.c.kind == "chunk", _KNOWLEDGE.c.source != "")
        .distinct()
    ).all()
    for document_id, source in stored:
        shown = _shown(source, document_id or "")
        if shown is not None:
            bind.execute(
                sa.update(_KNOWLEDGE)
                .where(_KNOWLEDGE.c.document_id == document_id, _KNOWLEDGE.c.source == source)
                .values(source=shown, origin=source)
            )


def downgrade() -> None:
    bind = op.get_bind()
    bind.execute(sa.update(_KNOWLEDGE).where(_KNOWLEDGE.c.origin != "").values(source=_KNOWLEDGE.c.origin))
    with op.batch_alter_table("knowledge", schema=None) as batch_op:
        batch_op.drop_column("origin")
