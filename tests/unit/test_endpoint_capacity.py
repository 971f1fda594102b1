"""The message of a scale-up that the platform's instance slots cannot hold."""

from pathlib import Path

import pytest

from berth.auth import authenticate
from berth.bootstrap import bootstrap
from berth.db.engine import Database, migrate
from berth.errors import CapacityError
from berth.secrets import KeyVault
from berth.service import endpoints
from berth.service.keys import set_vault
from berth.states import EndpointState

ADMIN_KEY = "unit-test-admin-key-capacity"
LIMITS = endpoints.Limits(capacity=4, max_instances_per_endpoint=4)


def test_scale_up_names_slots_of_others(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'berth.db'}")
    migrate(database.engine)
    set_vault(KeyVault.from_file(tmp_path / "secret.key"))
    try:
        with database.session() as session:
            bootstrap(session, ADMIN_KEY)
            principal = authenticate(session, ADMIN_KEY, None)
            created = {}
            for name, instances in (("other", 1), ("chat", 2)):
                endpoint, _key = endpoints.create_endpoint(
                    session,
                    principal,
                    LIMITS,
                    project_ref="default",
                    name=name,
                    model_ref="echo",
                    instances=instances,
                )
                # The reconciler would have made both Live.
                endpoint.state = EndpointState.LIVE
                created[name] = endpoint
            session.flush()

            with pytest.raises(CapacityError) as raised:
                endpoints.update_endpoint(
                    session,
                    principal,
                    LIMITS,
                    created["chat"],
                    endpoints.EndpointChange(instances=4),
                )
    finally:
        database.dispose()

    assert str(raised.value) == (
        "cannot scale endpoint 'chat' to 4 instances: other endpoints hold 1 of the "
        "platform's 4 instance slots, so it can have at most 3; stop another endpoint or "
        "ask for fewer instances"
    )
