"""Alembic migrations run programmatically at startup: the shared history plus the service's own."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
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
