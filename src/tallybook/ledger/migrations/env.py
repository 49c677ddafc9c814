"""Alembic environment: run migrations on the engine tallybook hands over (no alembic.ini needed)."""

from alembic import context

from tallybook.ledger.schema import metadata

engine = context.config.attributes["engine"]

with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    context.run_migrations()
