"""/api/v1/orgs/{org_id}/<lookup>: the same five routes for each lookup kind."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel

from outputhub.common.schemas import (
    AccuracyLevelCreate,
    AccuracyLevelRead,
    AccuracyLevelUpdate,
    GptModelCreate,
    GptModelRead,
    GptModelUpdate,
    LookupCreate,
    LookupRead,
    LookupUpdate,
    Page,
)
from outputhub.server.api.lookups import service
from outputhub.server.api.lookups.service import KINDS, LookupKind
from outputhub.server.cache import cached_bytes
from outputhub.server.deps import IfMatchDep, NowDep, Reader, ServicesDep, SessionDep, Writer, etag

SCHEMAS: dict[str, tuple[type[BaseModel], type[BaseModel], type[BaseModel]]] = {
    "accuracy-levels": (AccuracyLevelCreate, AccuracyLevelUpdate, AccuracyLevelRead),
    "gpt-models": (GptModelCreate, GptModelUpdate, GptModelRead),
}

Limit = Annotated[int, Query(ge=1, le=500)]


def _typed(fn: Callable[..., Any], **annotations: Any) -> Callable[..., Any]:
    """Give a factory-made endpoint its concrete schema types (string annotations cannot see closures)."""
    fn.__annotations__.update(annotations)
    return fn


def build_router(kind: LookupKind) -> APIRouter:
    create_schema, update_schema, read_schema = SCHEMAS.get(
        kind.slug, (LookupCreate, LookupUpdate, LookupRead)
    )
    router = APIRouter(prefix=f"/orgs/{{org_id}}/{kind.slug}", tags=["taxonomy"])
    default_sort = "position" if kind.ordered else "name"

    def to_read(row: Any) -> BaseModel:
        return read_schema.model_validate(row, from_attributes=True)

    def list_items(
        tenant: Reader,
        session: SessionDep,
        services: ServicesDep,
        q: Annotated[str | None, Query(max_length=200, description="Text in the name")] = None,
        sort: Annotated[
            str, Query(description="position, name, created_at, updated_at; - to reverse")
        ] = default_sort,
        cursor: Annotated[str | None, Query(max_length=1000)] = None,
        limit: Limit = 100,
    ) -> Any:
        def compute() -> bytes:
            rows, next_cursor = service.list_page(
                session, kind, tenant=tenant, q=q, sort=sort, cursor=cursor, limit=limit
            )
            page = Page[read_schema](items=[to_read(r) for r in rows], next_cursor=next_cursor)  # type: ignore[valid-type]
            return page.model_dump_json().encode()

        if cursor is not None:  # first pages are cached per organization until its next write
            return Response(compute(), media_type="application/json", headers={"X-Cache": "bypass"})
        body, hit = cached_bytes(
            services.cache,
            org_id=tenant.org_id,
            namespace=f"lookups.{kind.slug}",
            params={"q": q, "sort": sort, "limit": limit},
            ttl_seconds=services.settings.cache_ttl_seconds,
            compute=compute,
        )
        return Response(body, media_type="application/json", headers={"X-Cache": "hit" if hit else "miss"})

    def create_item(data: Any, tenant: Writer, session: SessionDep, now: NowDep, response: Response) -> Any:
        row = service.create(session, kind, tenant=tenant, data=data.model_dump(), now=now)
        response.headers["ETag"] = etag(row.revision)
        return to_read(row)

    def get_item(item_id: uuid.UUID, tenant: Reader, session: SessionDep, response: Response) -> Any:
        row = service.get(session, kind, tenant=tenant, ident=item_id)
        response.headers["ETag"] = etag(row.revision)
        return to_read(row)

    def update_item(
        item_id: uuid.UUID,
        data: Any,
        tenant: Writer,
        session: SessionDep,
        now: NowDep,
        if_match: IfMatchDep,
        response: Response,
    ) -> Any:
        row = service.update_one(
            session,
            kind,
            tenant=tenant,
            ident=item_id,
            data=data.model_dump(exclude_unset=True),
            now=now,
            if_match=if_match,
        )
        response.headers["ETag"] = etag(row.revision)
        return to_read(row)

    def delete_item(
        item_id: uuid.UUID, tenant: Writer, session: SessionDep, now: NowDep, if_match: IfMatchDep
    ) -> None:
        service.delete_one(session, kind, tenant=tenant, ident=item_id, now=now, if_match=if_match)

    page_schema = Page[read_schema]  # type: ignore[valid-type]
    router.add_api_route(
        "",
        list_items,
        methods=["GET"],
        response_model=page_schema,
        summary=f"List {kind.label}s",
        name=f"list_{kind.table.__tablename__}",
    )
    router.add_api_route(
        "",
        _typed(create_item, data=create_schema),
        methods=["POST"],
        response_model=read_schema,
        status_code=status.HTTP_201_CREATED,
        summary=f"Create a {kind.label}",
        name=f"create_{kind.table.__tablename__}",
    )
    router.add_api_route(
        "/{item_id}",
        get_item,
        methods=["GET"],
        response_model=read_schema,
        summary=f"Get a {kind.label}",
        name=f"get_{kind.table.__tablename__}",
    )
    router.add_api_route(
        "/{item_id}",
        _typed(update_item, data=update_schema),
        methods=["PATCH"],
        response_model=read_schema,
        summary=f"Change a {kind.label}",
        name=f"update_{kind.table.__tablename__}",
    )
    router.add_api_route(
        "/{item_id}",
        delete_item,
        methods=["DELETE"],
        status_code=status.HTTP_204_NO_CONTENT,
        summary=f"Delete a {kind.label} (detaches it from every record using it)",
        name=f"delete_{kind.table.__tablename__}",
    )
    return router


def build_routers() -> list[APIRouter]:
    return [build_router(kind) for kind in KINDS]
