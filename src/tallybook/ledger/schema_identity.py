"""Tables: the identity map (versioned person/team/cost-centre assignments), seat plans and seat
assignments, and CSV import runs (the coding-tools issue).

They live on the ledger's one `metadata` (see schema.py, which imports this module last).

Versioning: an identity or a seat price is a row per version, each in force over
[effective_from, effective_to) (effective_to NULL: open-ended), so a person who changes team on
the 15th keeps their spend before the 15th where it was.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, String, Table, Text, UniqueConstraint

from tallybook.ledger.schema import RowId, metadata

# Who is behind an API key, an e-mail address or a project: one row per version.
identity_map = Table(
    "identity_map",
    metadata,
    Column("id", RowId, primary_key=True),
    Column("org_id", Integer, nullable=False),
    Column("kind", String(20), nullable=False),  # api_key | email | project
    Column("match_value", String(300), nullable=False),  # the key id or name, address, project/workspace id
    Column("person", String(200)),  # None: a shared key or project owned by a team
    Column("team", String(200)),
    Column("cost_centre", String(100)),
    Column("effective_from", DateTime, nullable=False),
    Column("effective_to", DateTime),  # exclusive; None: still in force
    Column("source_file", String(300)),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("org_id", "kind", "match_value", "effective_from"),
)

# What a seat costs: one row per platform, plan and price version.
seat_plans = Table(
    "seat_plans",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", Integer, nullable=False),
    Column("platform", String(40), nullable=False),  # cursor | claude | chatgpt | ...
    Column("plan", String(60), nullable=False),  # business | team | enterprise | ...
    Column("price_nanos", BigInteger, nullable=False),  # per seat per period, nano-units of `currency`
    Column("currency", String(3), nullable=False),
    Column("period", String(10), nullable=False),  # month | year
    Column("effective_from", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("org_id", "platform", "plan", "effective_from"),
)

# Who holds a seat, from when to when.
seat_assignments = Table(
    "seat_assignments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", Integer, nullable=False),
    Column("platform", String(40), nullable=False),
    Column("plan", String(60), nullable=False),
    Column("email", String(300), nullable=False),  # lower case
    Column("assigned_from", DateTime, nullable=False),
    Column("assigned_to", DateTime),  # exclusive; None: still assigned
    Column("origin", String(20), nullable=False),  # cli | import | cursor_members
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("org_id", "platform", "email", "assigned_from"),
)

# One row per CSV file imported: what, from where, and what it added up to.
import_runs = Table(
    "import_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", Integer, nullable=False),
    Column("source", String(60), nullable=False),  # csv:<name>
    Column("mapping", String(100), nullable=False),
    Column("file_name", String(300), nullable=False),
    Column("file_sha256", String(64), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("first_day", DateTime),
    Column("last_day", DateTime),
    Column("totals", Text, nullable=False),  # JSON: {currency: decimal text}
    Column("imported_at", DateTime, nullable=False),
    Index(None, "org_id", "source"),
)
