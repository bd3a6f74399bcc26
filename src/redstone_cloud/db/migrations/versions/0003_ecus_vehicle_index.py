"""Index ecus.vehicle_id: loading a vehicle's ECUs scanned the whole table.

Every poll miss, manifest and director publish loads ``vehicle.ecus``; without
the index each load read all ECUs of the fleet, so publishing director metadata
for a campaign's vehicles slowed as the fleet grew (tools/bench/director.py).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ecus", schema=None) as batch_op:
        batch_op.create_index("ix_ecus_vehicle_id", ["vehicle_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ecus", schema=None) as batch_op:
        batch_op.drop_index("ix_ecus_vehicle_id")
