"""Reports: the draft's trust signals (calibrated probabilities, out of distribution,
consistency flags, critical findings)

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-06

Revises 0003 until 0004 (batches) lands; then ``down_revision`` becomes "0004".
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trust", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_column("trust")
