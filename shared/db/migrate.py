"""Alembic migrations, run programmatically: the shared history plus the service's own.

In development a service migrates its database at start-up. In production ``cadencia migrate`` runs
once before the services (a Kubernetes Job, a compose one-shot), so replicas never race each other
through Alembic, and each service only checks at start-up that the schema is not behind its code.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from shared.db.database import Database

_HERE = Path(__file__).parent / "migrations"


def alembic_config(service: str, service_versions: Path | None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    locations = [str(_HERE / "versions")]
    if service_versions is not None:
        locations.append(str(service_versions))
    cfg.set_main_option("version_locations", " ".join(locations))
    cfg.set_main_option("path_separator", "space")
    cfg.attributes["version_table"] = f"alembic_version_{service}"
    return cfg


async def upgrade(db: Database, service: str, service_versions: Path | None = None) -> None:
    """Bring ``db`` to every head: the shared inbox/outbox history and ``service_versions``."""
    cfg = alembic_config(service, service_versions)

    def run(connection: Connection) -> None:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "heads")

    async with db.engine.connect() as conn:
        await conn.run_sync(run)
        await conn.commit()


class SchemaBehind(RuntimeError):
    """The database lacks migrations this code needs: run ``cadencia migrate`` first."""


async def missing_revisions(db: Database, service: str, service_versions: Path | None = None) -> set[str]:
    """Heads of the shared and service histories not yet applied to ``db`` (empty: up to date)."""
    cfg = alembic_config(service, service_versions)
    script = ScriptDirectory.from_config(cfg)

    def applied(connection: Connection) -> set[str]:
        context = MigrationContext.configure(connection, opts={"version_table": cfg.attributes["version_table"]})
        current = set(context.get_current_heads())
        # A head counts as applied if it, or a revision descending from it, is recorded.
        reached: set[str] = set()
        for revision in script.iterate_revisions(tuple(current), "base"):
            if revision is not None:
                reached.add(revision.revision)
        return reached

    async with db.engine.connect() as conn:
        reached = await conn.run_sync(applied)
    return set(script.get_heads()) - reached


async def prepare_schema(
    db: Database, service: str, service_versions: Path | None, *, migrate: bool
) -> None:
    """Migrate (``migrate``) or refuse to go on with a schema behind the code (:class:`SchemaBehind`)."""
    if migrate:
        await upgrade(db, service, service_versions)
        return
    missing = await missing_revisions(db, service, service_versions)
    if missing:
        raise SchemaBehind(
            f"the {service} database is missing migrations {sorted(missing)}: run `cadencia migrate {service}` "
            "(the migration Job) before starting the service"
        )
