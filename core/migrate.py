"""Schema migrations (alembic) for every package, run as one operation.

Each package that owns tables keeps its revisions in ``<package>/migrations/`` on a branch labelled
with the package name; the composition root passes the list of those directories, so core never
imports a package above it. ``upgrade`` goes to all heads.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

CORE_VERSIONS = str(Path(__file__).parent / "migrations" / "versions")


def _alembic_config(engine: Engine, version_locations: list[str]) -> AlembicConfig:
    # alembic is imported here, not at module level: every `govpki` command imports this
    # module (through ca.context) and most never migrate (~0.3 s of CLI start-up).
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("path_separator", "os")
    import os

    cfg.set_main_option("version_locations", os.pathsep.join(version_locations))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, version_locations: list[str]) -> None:
    from alembic import command

    command.upgrade(_alembic_config(engine, version_locations), "heads")


def pending(engine: Engine, version_locations: list[str]) -> list[str]:
    """Revisions not yet applied (empty when the schema is current)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = _alembic_config(engine, version_locations)
    script = ScriptDirectory.from_config(cfg)
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    heads = set(script.get_heads())
    if heads <= current:
        return []
    done: set[str] = set()
    for rev in current:
        done.update(r.revision for r in script.iterate_revisions(rev, "base"))
    return [r.revision for r in script.walk_revisions() if r.revision not in done]
