"""shared_answer.scope, .stamp, .stamp_registry: an answer whose unit's figures did not change still holds

Revision ID: b5d7f9a1c3e6
Revises: a7c9e1b3d5f7
Create Date: 2026-12-07 11:00:00

The data version moves with every batch of every unit, so under a live feed every stored answer is
behind it within milliseconds, and a request computed again a commune's answer that no batch had
touched. An answer that depends on one unit's figures alone (a commune's or a province's KPIs,
series, sectors, the ranking of a province's communes) now records that unit (`scope`), the sum of
the `unit_change` counts of the unit and the units under it (`stamp`), and the registry version,
read before its figures: while the same sum is read at a lookup, no batch changed its figures
(app.answers.repository.holds).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b5d7f9a1c3e6"
down_revision: str | None = "a7c9e1b3d5f7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("shared_answer", sa.Column("scope", sa.String(8), nullable=True))
    op.add_column("shared_answer", sa.Column("stamp", sa.BigInteger(), nullable=True))
    op.add_column("shared_answer", sa.Column("stamp_registry", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("shared_answer", "stamp_registry")
    op.drop_column("shared_answer", "stamp")
    op.drop_column("shared_answer", "scope")
