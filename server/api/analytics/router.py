"""/api/v1/orgs/{org_id}/analytics: chart-ready aggregates of the organization's outputs, JSON or CSV."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response

from outputhub.common.schemas import UtcDateTime
from outputhub.server.api.analytics import service
from outputhub.server.api.analytics.service import AnalyticsFilters, Bucket, Dimension, RankOrder
from outputhub.server.api.filters import (
    AccuracyFilter,
    AgentGroupFilter,
    CustomGptFilter,
    GptModelFilter,
    KnowledgeFilter,
    PromptFilter,
    StageFilter,
    TagFilter,
)
from outputhub.server.deps import Reader, ServicesDep, SessionDep

router = APIRouter(prefix="/orgs/{org_id}/analytics", tags=["analytics"])

Format = Annotated[
    Literal["json", "csv"], Query(description="`csv` downloads the same figures as a CSV file.")
]


def get_filters(
    created_from: Annotated[
        UtcDateTime | None,
        Query(alias="from", description="Outputs created at or after (ISO date or date-time; UTC if naive)."),
    ] = None,
    created_to: Annotated[
        UtcDateTime | None, Query(alias="to", description="Outputs created before (exclusive).")
    ] = None,
    prompt_id: PromptFilter = None,
    tag_id: TagFilter = None,
    knowledge_type_id: KnowledgeFilter = None,
    accuracy_level_id: AccuracyFilter = None,
    custom_gpt_id: CustomGptFilter = None,
    gpt_model_id: GptModelFilter = None,
    agent_group_id: AgentGroupFilter = None,
    development_stage_id: StageFilter = None,
) -> AnalyticsFilters:
    return AnalyticsFilters(
        created_from=created_from,
        created_to=created_to,
        prompt_ids=tuple(prompt_id or ()),
        tag_ids=tuple(tag_id or ()),
        knowledge_type_ids=tuple(knowledge_type_id or ()),
        accuracy_level_ids=tuple(accuracy_level_id or ()),
        custom_gpt_ids=tuple(custom_gpt_id or ()),
        gpt_model_ids=tuple(gpt_model_id or ()),
        agent_group_ids=tuple(agent_group_id or ()),
        development_stage_ids=tuple(development_stage_id or ()),
    )


FiltersDep = Annotated[AnalyticsFilters, Depends(get_filters)]


def _answer(result: dict[str, Any], *, fmt: str, filename: str) -> Response:
    if fmt == "csv":
        return Response(
            service.to_csv(result),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
        )
    return JSONResponse(result)


def _run(
    services: ServicesDep,
    tenant: Reader,
    *,
    name: str,
    filters: AnalyticsFilters,
    options: dict[str, Any],
    compute: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    return service.cached(
        services.cache, tenant=tenant, name=name, filters=filters, options=options, compute=compute
    )


@router.get("/overview")
def overview(
    tenant: Reader, session: SessionDep, services: ServicesDep, filters: FiltersDep, format: Format = "json"
) -> Response:
    """Matching outputs, rated outputs, their mean accuracy score (0-100), prompts."""
    result = _run(
        services,
        tenant,
        name="overview",
        filters=filters,
        options={},
        compute=lambda: service.overview(session, tenant=tenant, filters=filters),
    )
    return _answer(result, fmt=format, filename="overview")


@router.get("/accuracy")
def accuracy(
    tenant: Reader,
    session: SessionDep,
    services: ServicesDep,
    filters: FiltersDep,
    by: Annotated[Dimension, Query(description="Group the outputs by this relation.")] = "gpt_model",
    format: Format = "json",
) -> Response:
    """Outputs per accuracy level (one series each, plus Unrated) for every group, with the group's mean
    accuracy score. Agent groups: an output counts in every group of its custom GPT."""
    result = _run(
        services,
        tenant,
        name="accuracy",
        filters=filters,
        options={"by": by},
        compute=lambda: service.accuracy(session, tenant=tenant, filters=filters, by=by),
    )
    return _answer(result, fmt=format, filename=f"accuracy-by-{by.replace('_', '-')}")


@router.get("/knowledge-types")
def knowledge_types(
    tenant: Reader,
    session: SessionDep,
    services: ServicesDep,
    filters: FiltersDep,
    bucket: Annotated[Bucket, Query(description="Period length (UTC; weeks start on Monday).")] = "week",
    format: Format = "json",
) -> Response:
    """Outputs per knowledge type per period, from the first to the last period without gaps."""
    result = _run(
        services,
        tenant,
        name="knowledge_types",
        filters=filters,
        options={"bucket": bucket},
        compute=lambda: service.knowledge_over_time(session, tenant=tenant, filters=filters, bucket=bucket),
    )
    return _answer(result, fmt=format, filename=f"knowledge-types-per-{bucket}")


@router.get("/stage-funnel")
def stage_funnel(
    tenant: Reader, session: SessionDep, services: ServicesDep, filters: FiltersDep, format: Format = "json"
) -> Response:
    """Prompts per development stage in stage order, prompts at that stage or a later one, and outputs."""
    result = _run(
        services,
        tenant,
        name="stage_funnel",
        filters=filters,
        options={},
        compute=lambda: service.stage_funnel(session, tenant=tenant, filters=filters),
    )
    return _answer(result, fmt=format, filename="stage-funnel")


@router.get("/tags")
def tags(
    tenant: Reader,
    session: SessionDep,
    services: ServicesDep,
    filters: FiltersDep,
    limit: Annotated[int, Query(ge=1, le=500, description="The most used tags to return.")] = 20,
    format: Format = "json",
) -> Response:
    """Matching outputs and prompts per tag, most used first."""
    result = _run(
        services,
        tenant,
        name="tags",
        filters=filters,
        options={"limit": limit},
        compute=lambda: service.tag_usage(session, tenant=tenant, filters=filters, limit=limit),
    )
    return _answer(result, fmt=format, filename="tag-usage")


@router.get("/prompt-ranking")
def prompt_ranking(
    tenant: Reader,
    session: SessionDep,
    services: ServicesDep,
    filters: FiltersDep,
    order: Annotated[RankOrder, Query(description="best: highest mean score first; worst: lowest.")] = "best",
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    min_outputs: Annotated[
        int, Query(ge=1, le=100_000, description="Leave out prompts with fewer rated outputs.")
    ] = 1,
    format: Format = "json",
) -> Response:
    """Prompts by the mean accuracy score (0-100) of their rated matching outputs."""
    options = {"order": order, "limit": limit, "min_outputs": min_outputs}
    result = _run(
        services,
        tenant,
        name="prompt_ranking",
        filters=filters,
        options=options,
        compute=lambda: service.prompt_ranking(
            session, tenant=tenant, filters=filters, order=order, limit=limit, min_outputs=min_outputs
        ),
    )
    return _answer(result, fmt=format, filename=f"prompts-{order}")
