"""the application's role: app_tenant owns no table, so row-level security applies to it

The app connects with `-c role=app_tenant` (DB_ROLE). The role is cluster-wide: created once,
never dropped here (other databases of the cluster may use it). Migrations keep running as
the owner of the tables, which row-level security does not restrict.

Revision ID: a7c4e2f91b03
Revises: 6f2d8a4c1e57
Create Date: 2026-12-02 11:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "a7c4e2f91b03"
down_revision: str | None = "6f2d8a4c1e57"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DML = "SELECT, INSERT, UPDATE, DELETE"


def upgrade() -> None:
    # Idempotent, and safe when two databases of one cluster migrate at once.
    op.execute(
        """
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_tenant') THEN
                CREATE ROLE app_tenant NOLOGIN NOSUPERUSER NOBYPASSRLS;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END
        $$
        """
    )
    # A login that is not a superuser may act as app_tenant only as a member of it.
    op.execute(
        """
        DO $$
        BEGIN
            IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
               AND NOT pg_has_role(current_user, 'app_tenant', 'MEMBER') THEN
                EXECUTE format('GRANT app_tenant TO %I', current_user);
            END IF;
        END
        $$
        """
    )
    op.execute("GRANT USAGE ON SCHEMA public TO app_tenant")
    op.execute(f"GRANT {DML} ON ALL TABLES IN SCHEMA public TO app_tenant")
    op.execute("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO app_tenant")
    # Tables and sequences the migrations create from now on.
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT {DML} ON TABLES TO app_tenant")
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO app_tenant"
    )


def downgrade() -> None:
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE USAGE, SELECT ON SEQUENCES FROM app_tenant"
    )
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE {DML} ON TABLES FROM app_tenant")
    op.execute("REVOKE USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public FROM app_tenant")
    op.execute(f"REVOKE {DML} ON ALL TABLES IN SCHEMA public FROM app_tenant")
    op.execute("REVOKE USAGE ON SCHEMA public FROM app_tenant")
