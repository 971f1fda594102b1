"""The organization admin's first key, as bootstrap stores it."""

from pathlib import Path

from sqlalchemy import select

from berth.bootstrap import bootstrap
from berth.db.engine import Database, migrate
from berth.db.models import PlatformKey
from berth.secrets import KeyVault
from berth.service.keys import set_vault


def _first_key(tmp_path: Path, admin_key: str | None) -> tuple[PlatformKey, str | None]:
    database = Database(f"sqlite:///{tmp_path / 'berth.db'}")
    migrate(database.engine)
    set_vault(KeyVault.from_file(tmp_path / "secret.key"))
    try:
        with database.session() as session:
            generated = bootstrap(session, admin_key).generated_admin_key
            return session.scalars(select(PlatformKey)).one(), generated
    finally:
        database.dispose()


def test_generated_key_shows_its_start(tmp_path: Path) -> None:
    row, generated = _first_key(tmp_path, None)

    assert generated is not None
    # `berth platform-key list` shows it, and `revoke` finds the key by it.
    assert row.key_prefix and generated.startswith(row.key_prefix)


def test_chosen_key_shows_nothing(tmp_path: Path) -> None:
    row, generated = _first_key(tmp_path, "a-key-the-operator-chose")

    assert generated is None
    assert row.key_prefix == ""
