"""A CA's private key may live on a PKCS#11 token: its URI (without PIN) is recorded.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("certificate_authorities", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_uri", sa.String(length=1024), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("certificate_authorities", schema=None) as batch_op:
        batch_op.drop_column("key_uri")
