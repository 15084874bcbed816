"""/api/v1/orgs/{org_id}/sync: the replication feed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from outputhub.common.errors import InvalidInputError
from outputhub.common.sync import SUPPORTED_PROTOCOLS, PullPage
from outputhub.server.api.sync import service
from outputhub.server.deps import Reader, SessionDep

router = APIRouter(prefix="/orgs/{org_id}/sync", tags=["sync"])


@router.get("/changes")
def pull_changes(
    tenant: Reader,
    session: SessionDep,
    protocol: Annotated[int, Query(description="Sync protocol version the client speaks.")],
    since: Annotated[int, Query(ge=0, description="The last revision the replica has (0: everything).")] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> PullPage:
    """Every record changed after `since`, tombstones included, in revision order (lookups before the
    records that reference them). Pages never split a revision."""
    if protocol not in SUPPORTED_PROTOCOLS:
        raise InvalidInputError(
            "query.protocol",
            f"unsupported sync protocol {protocol}; this server speaks {sorted(SUPPORTED_PROTOCOLS)}",
        )
    return service.pull(session, tenant=tenant, since=since, limit=limit)
