"""The architecture and chat template that the server records on built-in checkpoints."""

from sqlalchemy import select

from berth.bootstrap import BUILTIN_CHECKPOINT, bootstrap
from berth.db.engine import Database
from berth.db.models import Checkpoint, Model
from tests.unit.conftest import UNIT_ADMIN_KEY

EXPECTED = {
    "all-MiniLM-L6-v2": ("BertModel", False),
    "demo-tiny-llama": ("LlamaForCausalLM", True),
    "demo-tiny-llama-base": ("LlamaForCausalLM", True),
    "echo": ("none", False),
}


def _recorded(database: Database) -> dict[str, tuple[str, bool | None]]:
    with database.session() as session:
        rows = session.execute(
            select(Model.name, Checkpoint.architecture, Checkpoint.has_chat_template)
            .join(Checkpoint, Checkpoint.model_id == Model.id)
            .where(Model.is_builtin.is_(True), Checkpoint.name_key == BUILTIN_CHECKPOINT)
        )
        return {name: (architecture, template) for name, architecture, template in rows}


def test_fresh_install_records_contents(database: Database) -> None:
    assert _recorded(database) == EXPECTED


def test_restart_fills_unknown_contents(database: Database) -> None:
    # Built-in checkpoints that an older Berth created record neither value.
    with database.session() as session:
        for checkpoint in session.scalars(select(Checkpoint)):
            checkpoint.architecture = ""
            checkpoint.has_chat_template = None

    with database.session() as session:
        bootstrap(session, UNIT_ADMIN_KEY)

    assert _recorded(database) == EXPECTED
