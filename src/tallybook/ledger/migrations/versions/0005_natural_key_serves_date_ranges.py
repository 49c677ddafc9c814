"""The natural key leads with (org_id, bucket_start), so it serves date-range reads and the separate
bucket index goes: one index fewer to maintain on every write.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 14:29:29.565950
"""
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

NEW = ["org_id", "bucket_start", "bucket_width", "connection_id", "source", "stream", "record_key"]
OLD = ["org_id", "connection_id", "source", "stream", "bucket_width", "bucket_start", "record_key"]


def _rekey(table: str, columns: list[str], *, bucket_index: bool) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.drop_constraint(f"uq_{table}_natural_key", type_="unique")
        batch_op.create_unique_constraint(f"uq_{table}_natural_key", columns)
        index = f"ix_{table}_org_id_bucket_width_bucket_start"
        if bucket_index:
            batch_op.create_index(index, ["org_id", "bucket_width", "bucket_start"], unique=False)
        else:
            batch_op.drop_index(index)


def upgrade() -> None:
    for table in ("cost_records", "usage_records"):
        _rekey(table, NEW, bucket_index=False)


def downgrade() -> None:
    for table in ("usage_records", "cost_records"):
        _rekey(table, OLD, bucket_index=True)
