"""Liveness of the server and the identity of the caller."""

from fastapi import APIRouter

from berth import __version__
from berth.api.convert import whoami_out
from berth.api.deps import PrincipalDep
from berth.api.schemas import Health, WhoAmI
from berth.api.strict_json import StrictJSONRoute

router = APIRouter(tags=["health"], route_class=StrictJSONRoute)


@router.get("/health", response_model=Health)
def health() -> Health:
    """Return the server status, without credentials, once the server is ready."""
    return Health(status="ok", version=__version__)


@router.get("/whoami", response_model=WhoAmI)
def whoami(principal: PrincipalDep) -> WhoAmI:
    """Return the calling user and the active tenant."""
    return whoami_out(principal)
