"""core: audit_event is append-only in the database (triggers refuse UPDATE, DELETE, TRUNCATE).

The hash chain and the signed checkpoints *detect* a changed log; these triggers *stop* the
common ways of changing it: an application bug, or an operator's hand-typed UPDATE/DELETE.
Someone who may run DDL can drop them (and the chain still catches what they do next), so this
is a guard, not a proof; docs/audit.md, *Append-only guard*. ``audit_head`` is not guarded:
every append updates it by design.

SQLite has no TRUNCATE (``DELETE FROM audit_event`` without WHERE fires the DELETE trigger,
which also turns off SQLite's truncate optimisation). A later migration that batch-alters
``audit_event`` on SQLite (copy, drop, rename) drops these triggers with the old table and
must create them again.

The statements are module constants so the tests that play an attacker with DDL rights drop
exactly these objects (tests/audit_guard.py).

Revision ID: core_0002
Revises: core_0001
Create Date: 2026-11-26
"""
from alembic import op

revision = "core_0002"
down_revision = "core_0001"
branch_labels = None
depends_on = None

#: The refusal; {verb} is UPDATE, DELETE or TRUNCATE.
MESSAGE = "the audit log is append-only: {verb} on audit_event refused"

SQLITE_CREATE = [
    f"""
    CREATE TRIGGER audit_event_no_{verb.lower()}
    BEFORE {verb} ON audit_event
    BEGIN
        SELECT RAISE(ABORT, '{MESSAGE.format(verb=verb)}');
    END
    """
    for verb in ("UPDATE", "DELETE")
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS audit_event_no_delete",
    "DROP TRIGGER IF EXISTS audit_event_no_update",
]

# SQLSTATE 23000 (integrity_constraint_violation): the same class SQLite's RAISE(ABORT) reports
# (SQLITE_CONSTRAINT), so both backends surface as sqlalchemy.exc.IntegrityError.
POSTGRESQL_CREATE = [
    f"""
    CREATE FUNCTION audit_event_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION USING
            ERRCODE = 'integrity_constraint_violation',
            MESSAGE = format('{MESSAGE.format(verb="%s")}', TG_OP),
            HINT = 'audit rows are only ever inserted; see docs/audit.md';
    END
    $$
    """,
    """
    CREATE TRIGGER audit_event_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_event
    FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()
    """,
    """
    CREATE TRIGGER audit_event_no_truncate
    BEFORE TRUNCATE ON audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()
    """,
]
POSTGRESQL_DROP = [
    "DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_event",
    "DROP TRIGGER IF EXISTS audit_event_no_update_delete ON audit_event",
    "DROP FUNCTION IF EXISTS audit_event_append_only()",
]

CREATE = {"sqlite": SQLITE_CREATE, "postgresql": POSTGRESQL_CREATE}
DROP = {"sqlite": SQLITE_DROP, "postgresql": POSTGRESQL_DROP}


def _statements(table: dict[str, list[str]]) -> list[str]:
    dialect = op.get_bind().dialect.name
    if dialect not in table:
        raise NotImplementedError(f"no audit_event append-only guard for {dialect}")
    return table[dialect]


def upgrade() -> None:
    for statement in _statements(CREATE):
        op.execute(statement)


def downgrade() -> None:
    for statement in _statements(DROP):
        op.execute(statement)
