"""Analytics over an organization's outputs, computed by the database (GROUP BY) and shaped for charts.

Every result is a JSON-able dict: ``labels`` (the categories, in display order), ``keys`` (their ids, or
null for the "none" bucket), ``series`` (one per stacked value: ``name``, ``key`` and ``data`` aligned with
``labels``) and ``label_name`` (what a label is, the first CSV column). Results are cached per organization
with :func:`outputhub.server.cache.cached_json`; every committed write bumps the organization's cache
generation, so a write changes the next answer.

One filter set (:class:`AnalyticsFilters`) applies to every result and always describes **outputs**: the date
range is on the output's ``created_at`` (``from`` inclusive, ``to`` exclusive); tags and knowledge types are
the output's (every one of them), the development stage is the output's prompt's. Prompt counts (the funnel,
tag usage) count every live prompt, narrowed by ``prompt_id`` / ``development_stage_id``, and when any other
filter is given, to prompts that have at least one matching output.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, String, and_, func, select
from sqlalchemy.orm import Session

from outputhub.common.errors import InvalidInputError
from outputhub.common.schemas import to_utc
from outputhub.server.api.base import Tenant
from outputhub.server.api.outputs import service as outputs_service
from outputhub.server.cache import Cache, cached_json
from outputhub.server.storage.tables import (
    AccuracyLevel,
    AgentGroup,
    CustomGpt,
    CustomGptAgentGroup,
    DevelopmentStage,
    GptModel,
    KnowledgeType,
    Output,
    OutputKnowledgeType,
    OutputTag,
    Prompt,
    PromptTag,
    Tag,
)

Dimension = Literal["gpt_model", "custom_gpt", "agent_group", "development_stage"]
Bucket = Literal["day", "week", "month"]
RankOrder = Literal["best", "worst"]
DIMENSIONS: tuple[Dimension, ...] = ("gpt_model", "custom_gpt", "agent_group", "development_stage")
DIMENSION_LABELS: dict[str, tuple[str, str]] = {
    # dimension: (what a label is, the name of the "none" bucket)
    "gpt_model": ("GPT model", "No GPT model"),
    "custom_gpt": ("Custom GPT", "No custom GPT"),
    "agent_group": ("Agent group", "No agent group"),
    "development_stage": ("Development stage", "No stage"),
}
MAX_BUCKETS = 1000
CACHE_TTL_SECONDS = 600
UNRATED = "Unrated"


@dataclass(frozen=True)
class AnalyticsFilters:
    """Which outputs count. Empty tuples mean "no filter"."""

    created_from: datetime | None = None
    created_to: datetime | None = None
    prompt_ids: tuple[uuid.UUID, ...] = ()
    tag_ids: tuple[uuid.UUID, ...] = ()
    knowledge_type_ids: tuple[uuid.UUID, ...] = ()
    accuracy_level_ids: tuple[uuid.UUID, ...] = ()
    custom_gpt_ids: tuple[uuid.UUID, ...] = ()
    gpt_model_ids: tuple[uuid.UUID, ...] = ()
    agent_group_ids: tuple[uuid.UUID, ...] = ()
    development_stage_ids: tuple[uuid.UUID, ...] = ()

    def __post_init__(self) -> None:
        for name, field in (("created_from", "query.from"), ("created_to", "query.to")):
            value = getattr(self, name)
            if value is None:
                continue
            try:  # the router's UtcDateTime did this already; other callers (the portal) rely on it here
                value = to_utc(value)
            except ValueError as exc:
                raise InvalidInputError(field, str(exc)) from exc
            object.__setattr__(self, name, value)
        if self.created_from and self.created_to and self.created_from >= self.created_to:
            raise InvalidInputError("query.from", "must be earlier than `to`")

    @property
    def narrows_outputs(self) -> bool:
        """Whether a filter other than the prompt-side ones (prompt, stage) is given."""
        return bool(
            self.created_from
            or self.created_to
            or self.tag_ids
            or self.knowledge_type_ids
            or self.accuracy_level_ids
            or self.custom_gpt_ids
            or self.gpt_model_ids
            or self.agent_group_ids
        )

    def cache_params(self) -> dict[str, Any]:
        return {
            "from": self.created_from.isoformat() if self.created_from else None,
            "to": self.created_to.isoformat() if self.created_to else None,
            **{
                name: sorted(str(i) for i in getattr(self, name))
                for name in (
                    "prompt_ids",
                    "tag_ids",
                    "knowledge_type_ids",
                    "accuracy_level_ids",
                    "custom_gpt_ids",
                    "gpt_model_ids",
                    "agent_group_ids",
                    "development_stage_ids",
                )
            },
        }


# --- the WHERE clauses ---------------------------------------------------------------------------------


def output_conditions(*, tenant: Tenant, filters: AnalyticsFilters) -> list[ColumnElement[bool]]:
    """The live outputs of the caller's organization that match every filter (the outputs list's rules)."""
    f = filters
    return outputs_service.output_conditions(
        tenant=tenant,
        prompt_ids=f.prompt_ids,
        tag_ids=f.tag_ids,
        knowledge_type_ids=f.knowledge_type_ids,
        accuracy_level_ids=f.accuracy_level_ids,
        custom_gpt_ids=f.custom_gpt_ids,
        gpt_model_ids=f.gpt_model_ids,
        agent_group_ids=f.agent_group_ids,
        development_stage_ids=f.development_stage_ids,
        created_from=f.created_from,
        created_to=f.created_to,
    )


def prompt_conditions(*, tenant: Tenant, filters: AnalyticsFilters) -> list[ColumnElement[bool]]:
    """Live prompts, narrowed by prompt and stage; by having a matching output when outputs are filtered."""
    conditions: list[ColumnElement[bool]] = [Prompt.org_id == tenant.org_id, Prompt.deleted.is_(False)]
    if filters.prompt_ids:
        conditions.append(Prompt.id.in_(filters.prompt_ids))
    if filters.development_stage_ids:
        conditions.append(Prompt.development_stage_id.in_(filters.development_stage_ids))
    if filters.narrows_outputs:
        conditions.append(
            select(Output.id)
            .where(Output.prompt_id == Prompt.id, *output_conditions(tenant=tenant, filters=filters))
            .exists()
        )
    return conditions


def _names(session: Session, table: Any, *, tenant: Tenant, order: Sequence[Any]) -> list[tuple[Any, ...]]:
    return list(
        session.execute(
            select(table.id, table.name, *([table.score] if table is AccuracyLevel else []))
            .where(table.org_id == tenant.org_id, table.deleted.is_(False))
            .order_by(*order, table.id)
        ).all()
    )


def _lookup_names(session: Session, table: Any, *, tenant: Tenant) -> list[tuple[uuid.UUID, str]]:
    order = (table.name,) if table is CustomGpt else (table.position, table.name)
    return [(row[0], row[1]) for row in _names(session, table, tenant=tenant, order=order)]


def _accuracy_levels(session: Session, *, tenant: Tenant) -> list[tuple[uuid.UUID, str, int]]:
    rows = _names(session, AccuracyLevel, tenant=tenant, order=(AccuracyLevel.score, AccuracyLevel.position))
    return [(r[0], r[1], int(r[2])) for r in rows]


def _key(value: uuid.UUID | None) -> str | None:
    return str(value) if value is not None else None


# --- the results -------------------------------------------------------------------------------------------


def overview(session: Session, *, tenant: Tenant, filters: AnalyticsFilters) -> dict[str, Any]:
    """Totals: matching outputs, rated outputs, their mean accuracy score, prompts."""
    rated_level = and_(
        AccuracyLevel.id == Output.accuracy_level_id,
        AccuracyLevel.org_id == tenant.org_id,
        AccuracyLevel.deleted.is_(False),
    )
    outputs, rated, mean = session.execute(
        select(func.count(Output.id), func.count(AccuracyLevel.id), func.avg(AccuracyLevel.score))
        .select_from(Output)
        .outerjoin(AccuracyLevel, rated_level)
        .where(*output_conditions(tenant=tenant, filters=filters))
    ).one()
    prompts = session.execute(
        select(func.count(Prompt.id)).where(*prompt_conditions(tenant=tenant, filters=filters))
    ).scalar_one()
    mean_score = round(float(mean), 2) if mean is not None else None
    return {
        "chart": "overview",
        "title": "Overview",
        "label_name": "Measure",
        "labels": ["Outputs", "Rated outputs", "Mean accuracy score", "Prompts"],
        "keys": ["outputs", "rated_outputs", "mean_score", "prompts"],
        "series": [
            {"name": "Value", "key": None, "data": [int(outputs), int(rated), mean_score, int(prompts)]}
        ],
        "outputs": int(outputs),
        "rated_outputs": int(rated),
        "mean_score": mean_score,
        "prompts": int(prompts),
    }


def accuracy(session: Session, *, tenant: Tenant, filters: AnalyticsFilters, by: Dimension) -> dict[str, Any]:
    """How the matching outputs were rated, per GPT model / custom GPT / agent group / prompt stage.

    An output counts once per group it belongs to: for agent groups, once per group of its custom GPT.
    Groups without a matching output are left out; the "none" bucket comes last.
    """
    if by not in DIMENSIONS:
        raise InvalidInputError("query.by", f"must be one of {', '.join(DIMENSIONS)}")
    stmt = select(Output.accuracy_level_id, func.count()).select_from(Output)
    if by == "gpt_model":
        group_col: Any = Output.gpt_model_id
        table: Any = GptModel
    elif by == "custom_gpt":
        group_col, table = Output.custom_gpt_id, CustomGpt
    elif by == "agent_group":
        group_col, table = CustomGptAgentGroup.agent_group_id, AgentGroup
        stmt = stmt.outerjoin(
            CustomGptAgentGroup,
            and_(
                CustomGptAgentGroup.custom_gpt_id == Output.custom_gpt_id,
                CustomGptAgentGroup.org_id == tenant.org_id,
            ),
        )
    else:
        group_col, table = Prompt.development_stage_id, DevelopmentStage
        stmt = stmt.join(Prompt, and_(Prompt.id == Output.prompt_id, Prompt.org_id == tenant.org_id))
    stmt = (
        stmt.add_columns(group_col)
        .where(*output_conditions(tenant=tenant, filters=filters))
        .group_by(group_col, Output.accuracy_level_id)
    )
    counts: dict[tuple[uuid.UUID | None, uuid.UUID | None], int] = {
        (group, level): int(n) for level, n, group in session.execute(stmt).all()
    }
    levels = _accuracy_levels(session, tenant=tenant)
    level_ids = {lid for lid, _, _ in levels}
    present = {group for group, _ in counts}
    label_name, none_label = DIMENSION_LABELS[by]
    groups: list[tuple[uuid.UUID | None, str]] = [
        (gid, name) for gid, name in _lookup_names(session, table, tenant=tenant) if gid in present
    ]
    known = {gid for gid, _ in groups}
    groups += [(gid, "(deleted)") for gid in sorted(present - known - {None}, key=str)]
    if None in present:
        groups.append((None, none_label))

    series: list[dict[str, Any]] = [
        {"name": name, "key": str(lid), "score": score, "data": [counts.get((g, lid), 0) for g, _ in groups]}
        for lid, name, score in levels
    ]
    unrated = [
        sum(n for (g2, lid), n in counts.items() if g2 == g and lid not in level_ids) for g, _ in groups
    ]
    series.append({"name": UNRATED, "key": None, "score": None, "data": unrated})
    scores = {lid: score for lid, _, score in levels}
    totals, rated, means = [], [], []
    for g, _ in groups:
        total = sum(n for (g2, _lid), n in counts.items() if g2 == g)
        rated_n = sum(n for (g2, lid), n in counts.items() if g2 == g and lid in scores)
        score_sum = sum(n * scores[lid] for (g2, lid), n in counts.items() if g2 == g and lid in scores)
        totals.append(total)
        rated.append(rated_n)
        means.append(round(score_sum / rated_n, 2) if rated_n else None)
    return {
        "chart": "accuracy",
        "by": by,
        "title": f"Accuracy by {label_name.lower() if by != 'gpt_model' else 'GPT model'}",
        "label_name": label_name,
        "labels": [name for _, name in groups],
        "keys": [_key(g) for g, _ in groups],
        "series": series,
        "totals": totals,
        "rated": rated,
        "mean_score": means,
    }


def _bucket_expr(session: Session, bucket: Bucket) -> Any:
    """The bucket's first day as ``YYYY-MM-DD`` (UTC; weeks start on Monday), on either backend."""
    if session.get_bind().dialect.name == "postgresql":
        truncated = func.date_trunc(bucket, func.timezone("UTC", Output.created_at))
        return func.to_char(truncated, "YYYY-MM-DD", type_=String)
    if bucket == "day":
        return func.strftime("%Y-%m-%d", Output.created_at, type_=String)
    if bucket == "week":
        return func.strftime("%Y-%m-%d", Output.created_at, "weekday 0", "-6 days", type_=String)
    return func.strftime("%Y-%m-01", Output.created_at, type_=String)


def bucket_start(moment: date, bucket: Bucket) -> date:
    day = moment.date() if isinstance(moment, datetime) else moment
    if bucket == "week":
        return day - timedelta(days=day.weekday())
    if bucket == "month":
        return day.replace(day=1)
    return day


def _next_bucket(day: date, bucket: Bucket) -> date:
    if bucket == "day":
        return day + timedelta(days=1)
    if bucket == "week":
        return day + timedelta(days=7)
    return date(day.year + (day.month == 12), day.month % 12 + 1, 1)


def _bucket_range(first: date, last: date, bucket: Bucket) -> list[date]:
    out: list[date] = []
    day = first
    while day <= last:
        if len(out) >= MAX_BUCKETS:
            raise InvalidInputError(
                "query.bucket",
                f"more than {MAX_BUCKETS} {bucket} buckets; choose a wider bucket or a shorter date range",
            )
        out.append(day)
        if day == last:
            break
        try:
            day = _next_bucket(day, bucket)
        except (OverflowError, ValueError):  # the calendar's last bucket (9999-12-31) has no next one
            break
    return out


def _last_bucket(created_to: datetime, bucket: Bucket) -> date | None:
    """The bucket of the last moment before ``created_to`` (exclusive); None when no moment is before it
    (``created_to`` is the calendar's first instant, 0001-01-01)."""
    try:
        return bucket_start(created_to - timedelta(microseconds=1), bucket)
    except OverflowError:
        return None


def knowledge_over_time(
    session: Session, *, tenant: Tenant, filters: AnalyticsFilters, bucket: Bucket
) -> dict[str, Any]:
    """Matching outputs per knowledge type per day / week / month (an output counts once per type it has).

    The labels run without gaps from the first to the last bucket (of the date range when one is given).
    """
    if bucket not in ("day", "week", "month"):
        raise InvalidInputError("query.bucket", "must be one of day, week, month")
    period = _bucket_expr(session, bucket).label("period")
    conditions = output_conditions(tenant=tenant, filters=filters)
    per_type = session.execute(
        select(period, OutputKnowledgeType.knowledge_type_id, func.count())
        .select_from(Output)
        # joined on the output alone: the output is already the tenant's, and an extra org_id term makes
        # SQLite probe the link table through its org_id index for every output (quadratic)
        .outerjoin(OutputKnowledgeType, OutputKnowledgeType.output_id == Output.id)
        .where(*conditions)
        .group_by(period, OutputKnowledgeType.knowledge_type_id)
    ).all()
    totals_by_period = {
        str(p): int(n)
        for p, n in session.execute(select(period, func.count()).where(*conditions).group_by(period)).all()
    }
    counts = {(str(p), kt): int(n) for p, kt, n in per_type}
    found = sorted(date.fromisoformat(p) for p in totals_by_period)
    first = (
        bucket_start(filters.created_from, bucket) if filters.created_from else (found[0] if found else None)
    )
    last = _last_bucket(filters.created_to, bucket) if filters.created_to else (found[-1] if found else None)
    days = _bucket_range(first, last, bucket) if first and last else []
    labels = [d.isoformat() for d in days]
    types = _lookup_names(session, KnowledgeType, tenant=tenant)
    type_ids = {tid for tid, _ in types}
    series = [
        {"name": name, "key": str(tid), "data": [counts.get((p, tid), 0) for p in labels]}
        for tid, name in types
    ]
    series.append(
        {
            "name": "No knowledge type",
            "key": None,
            "data": [
                sum(n for (p2, kt), n in counts.items() if p2 == p and kt not in type_ids) for p in labels
            ],
        }
    )
    return {
        "chart": "knowledge_over_time",
        "bucket": bucket,
        "title": f"Outputs by knowledge type per {bucket}",
        "label_name": f"{bucket.capitalize()} starting",
        "labels": labels,
        "keys": labels,
        "series": series,
        "totals": [totals_by_period.get(p, 0) for p in labels],
    }


def stage_funnel(session: Session, *, tenant: Tenant, filters: AnalyticsFilters) -> dict[str, Any]:
    """Prompts per development stage (in stage order), those at that stage or later, and their outputs."""
    prompts = dict(
        session.execute(
            select(Prompt.development_stage_id, func.count(Prompt.id))
            .where(*prompt_conditions(tenant=tenant, filters=filters))
            .group_by(Prompt.development_stage_id)
        ).all()
    )
    outputs = dict(
        session.execute(
            select(Prompt.development_stage_id, func.count(Output.id))
            .select_from(Output)
            .join(Prompt, and_(Prompt.id == Output.prompt_id, Prompt.org_id == tenant.org_id))
            .where(*output_conditions(tenant=tenant, filters=filters), Prompt.deleted.is_(False))
            .group_by(Prompt.development_stage_id)
        ).all()
    )
    stages: list[tuple[uuid.UUID | None, str]] = list(_lookup_names(session, DevelopmentStage, tenant=tenant))
    at_stage = [int(prompts.get(sid, 0)) for sid, _ in stages]
    reached = [sum(at_stage[i:]) for i in range(len(at_stage))]
    stages.append((None, "No stage"))
    at_stage.append(int(prompts.get(None, 0)))
    reached.append(at_stage[-1])
    return {
        "chart": "stage_funnel",
        "title": "Development-stage funnel",
        "label_name": "Development stage",
        "labels": [name for _, name in stages],
        "keys": [_key(sid) for sid, _ in stages],
        "series": [
            {"name": "Prompts at this stage", "key": "prompts", "data": at_stage},
            {"name": "Reached this stage or later", "key": "reached", "data": reached},
            {"name": "Outputs", "key": "outputs", "data": [int(outputs.get(sid, 0)) for sid, _ in stages]},
        ],
    }


def tag_usage(session: Session, *, tenant: Tenant, filters: AnalyticsFilters, limit: int) -> dict[str, Any]:
    """Every live tag with the matching outputs and the prompts carrying it, most used first."""
    on_outputs = dict(
        session.execute(
            select(OutputTag.tag_id, func.count())
            .select_from(OutputTag)
            .join(Output, and_(Output.id == OutputTag.output_id, OutputTag.org_id == tenant.org_id))
            .where(*output_conditions(tenant=tenant, filters=filters))
            .group_by(OutputTag.tag_id)
        ).all()
    )
    on_prompts = dict(
        session.execute(
            select(PromptTag.tag_id, func.count())
            .select_from(PromptTag)
            .join(Prompt, and_(Prompt.id == PromptTag.prompt_id, PromptTag.org_id == tenant.org_id))
            .where(*prompt_conditions(tenant=tenant, filters=filters))
            .group_by(PromptTag.tag_id)
        ).all()
    )
    tags = _lookup_names(session, Tag, tenant=tenant)
    tags.sort(key=lambda t: (-int(on_outputs.get(t[0], 0)), -int(on_prompts.get(t[0], 0)), t[1].casefold()))
    tags = tags[:limit]
    return {
        "chart": "tags",
        "title": "Tag usage",
        "label_name": "Tag",
        "labels": [name for _, name in tags],
        "keys": [str(tid) for tid, _ in tags],
        "series": [
            {"name": "Outputs", "key": "outputs", "data": [int(on_outputs.get(t, 0)) for t, _ in tags]},
            {"name": "Prompts", "key": "prompts", "data": [int(on_prompts.get(t, 0)) for t, _ in tags]},
        ],
    }


def prompt_ranking(
    session: Session,
    *,
    tenant: Tenant,
    filters: AnalyticsFilters,
    order: RankOrder,
    limit: int,
    min_outputs: int,
) -> dict[str, Any]:
    """Prompts by the mean accuracy score of their rated matching outputs: best or worst first.

    Ties: more rated outputs first, then title. Prompts with fewer than ``min_outputs`` rated outputs are
    left out.
    """
    mean = func.avg(AccuracyLevel.score)
    rated = func.count(Output.id)
    stmt = (
        select(Prompt.id, Prompt.title, mean, rated)
        .select_from(Output)
        .join(
            AccuracyLevel,
            and_(
                AccuracyLevel.id == Output.accuracy_level_id,
                AccuracyLevel.org_id == tenant.org_id,
                AccuracyLevel.deleted.is_(False),
            ),
        )
        .join(Prompt, and_(Prompt.id == Output.prompt_id, Prompt.org_id == tenant.org_id))
        .where(*output_conditions(tenant=tenant, filters=filters), Prompt.deleted.is_(False))
        .group_by(Prompt.id, Prompt.title)
        .having(rated >= min_outputs)
        .order_by(mean.desc() if order == "best" else mean.asc(), rated.desc(), Prompt.title, Prompt.id)
        .limit(limit)
    )
    rows = session.execute(stmt).all()
    return {
        "chart": "prompt_ranking",
        "order": order,
        "title": "Best-rated prompts" if order == "best" else "Worst-rated prompts",
        "label_name": "Prompt",
        "labels": [title for _, title, _, _ in rows],
        "keys": [str(pid) for pid, _, _, _ in rows],
        "series": [
            {
                "name": "Mean accuracy score",
                "key": "mean_score",
                "data": [round(float(m), 2) for _, _, m, _ in rows],
            },
            {"name": "Rated outputs", "key": "rated_outputs", "data": [int(n) for _, _, _, n in rows]},
        ],
    }


# --- caching and CSV ---------------------------------------------------------------------------------------


def cached(
    cache: Cache,
    *,
    tenant: Tenant,
    name: str,
    filters: AnalyticsFilters,
    options: dict[str, Any],
    compute: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """The result for (organization, name, filters, options), from the cache or computed and stored."""
    return cached_json(
        cache,
        org_id=tenant.org_id,
        namespace=f"analytics.{name}",
        params={"filters": filters.cache_params(), "options": options},
        ttl_seconds=CACHE_TTL_SECONDS,
        compute=compute,
    )


def to_csv(result: dict[str, Any]) -> str:
    """One row per label: the label, its id, then one column per series (and totals when present)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    extra = [name for name in ("totals", "rated", "mean_score") if isinstance(result.get(name), list)]
    extra_names = {"totals": "Total", "rated": "Rated", "mean_score": "Mean accuracy score"}
    # series names are user-given too (accuracy levels, knowledge types): the header row is defused as well
    header = [
        result["label_name"],
        "id",
        *(s["name"] for s in result["series"]),
        *(extra_names[e] for e in extra),
    ]
    writer.writerow([_csv_safe(str(cell)) for cell in header])
    for index, label in enumerate(result["labels"]):
        values = [s["data"][index] for s in result["series"]] + [result[e][index] for e in extra]
        writer.writerow(
            [_csv_safe(label), result["keys"][index] or "", *("" if v is None else v for v in values)]
        )
    return buffer.getvalue()


def _csv_safe(value: str) -> str:
    """Defuse spreadsheet formulas in user-given names (CSV injection): in every text cell, the header row's
    series names as well as the row labels."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
