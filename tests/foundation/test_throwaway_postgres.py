"""make test brings its own PostgreSQL where none runs: the throwaway cluster really works."""

from __future__ import annotations

import asyncpg
import pytest

from tests.postgres import ThrowawayCluster, _bin_dir, answers


def _have_initdb() -> bool:
    try:
        _bin_dir()
    except RuntimeError:
        return False
    return True


@pytest.mark.postgres
@pytest.mark.skipif(not _have_initdb(), reason="Debian's postgresql binaries are not installed")
@pytest.mark.timeout(180)
async def test_a_throwaway_cluster_serves_a_database_and_leaves_nothing_behind() -> None:
    cluster = ThrowawayCluster().start()
    try:
        assert answers(cluster.admin_dsn)
        conn = await asyncpg.connect(cluster.admin_dsn)
        try:
            await conn.execute('CREATE DATABASE "cadencia_probe"')
            assert await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = 'cadencia_probe'") == 1
        finally:
            await conn.close()
    finally:
        cluster.stop()
    assert not answers(cluster.admin_dsn)
    assert not cluster.root.exists()
