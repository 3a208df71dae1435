"""shared_answer.seq: the stored answer's change number, so workers follow the answers that changed

Revision ID: e1a3c5f7b9d2
Revises: f4b6d8e0a2c4
Create Date: 2026-12-06 12:00:00

Every store and every restamp of a shared answer gives its row a new `seq` (PostgreSQL: from the
sequence `shared_answer_seq`; SQLite, whose writers take turns: one more than the largest). A
worker reads the rows whose seq is above the last it saw (app.answers.service), a few times a
second, instead of looking each answer up at every poll: serving costs the database the same
whatever the number of pollers.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e1a3c5f7b9d2"
down_revision: str | None = "f4b6d8e0a2c4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("shared_answer", sa.Column("seq", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_index(op.f("ix_shared_answer_seq"), "shared_answer", ["seq"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE shared_answer_seq")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE shared_answer_seq")
    op.drop_index(op.f("ix_shared_answer_seq"), table_name="shared_answer")
    op.drop_column("shared_answer", "seq")
