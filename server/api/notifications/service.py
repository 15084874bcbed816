"""Notifications: created by event handlers and jobs, listed per user, marked read per user."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session

from outputhub.common.errors import InvalidInputError, NotFoundError, PermissionDeniedError
from outputhub.common.ids import new_uuid
from outputhub.common.roles import ROLE_RANK, Role
from outputhub.server.api.base import Tenant
from outputhub.server.api.notifications.tables import AccuracyAlertRule, Notification, NotificationRead
from outputhub.server.storage.tables import AccuracyLevel, CustomGpt, GptModel, Output

CONFLICT = "conflict.needs_resolution"
IMPORT_FINISHED = "import.finished"
WEBHOOK_DISABLED = "webhook.disabled"
ACCURACY_ALERT = "accuracy.alert"
KINDS = (CONFLICT, IMPORT_FINISHED, WEBHOOK_DISABLED, ACCURACY_ALERT)


def notify(
    session: Session,
    *,
    org_id: uuid.UUID,
    kind: str,
    title: str,
    now: datetime,
    body: str = "",
    data: dict[str, Any] | None = None,
    subject: str | None = None,
    user_id: uuid.UUID | None = None,
    min_role: Role = Role.VIEWER,
) -> Notification:
    """For ``user_id`` alone, or (without it) for every member with at least ``min_role``."""
    row = Notification(
        id=new_uuid(),
        org_id=org_id,
        kind=kind,
        title=title[:300],
        body=body,
        data=json.dumps(data or {}, default=str),
        subject=subject,
        user_id=user_id,
        min_role=min_role.value,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def user_of(tenant: Tenant) -> uuid.UUID:
    if tenant.user_id is None:
        raise PermissionDeniedError(
            "notifications belong to users; use a user's access token, not an API key"
        )
    return tenant.user_id


def _visible(tenant: Tenant) -> ColumnElement[bool]:
    user_id = user_of(tenant)
    roles = [r.value for r in Role if ROLE_RANK[r] <= ROLE_RANK[tenant.role]]
    return and_(
        Notification.org_id == tenant.org_id,
        or_(
            Notification.user_id == user_id,
            and_(Notification.user_id.is_(None), Notification.min_role.in_(roles)),
        ),
    )


@dataclass(frozen=True)
class NotificationItem:
    row: Notification
    read_at: datetime | None


def list_for(
    session: Session,
    *,
    tenant: Tenant,
    unread: bool = False,
    after: datetime | None = None,
    limit: int = 50,
) -> list[NotificationItem]:
    """Newest first; with ``after``, only newer ones, oldest first (the stream's order)."""
    read_at = NotificationRead.read_at
    stmt = (
        select(Notification, read_at)
        .outerjoin(
            NotificationRead,
            and_(
                NotificationRead.notification_id == Notification.id,
                NotificationRead.user_id == user_of(tenant),
            ),
        )
        .where(_visible(tenant))
    )
    if unread:
        stmt = stmt.where(read_at.is_(None))
    if after is not None:
        stmt = stmt.where(Notification.created_at > after).order_by(Notification.created_at, Notification.id)
    else:
        stmt = stmt.order_by(Notification.created_at.desc(), Notification.id.desc())
    return [NotificationItem(n, r) for n, r in session.execute(stmt.limit(limit)).all()]


def unread_count(session: Session, *, tenant: Tenant) -> int:
    return session.execute(
        select(func.count())
        .select_from(Notification)
        .outerjoin(
            NotificationRead,
            and_(
                NotificationRead.notification_id == Notification.id,
                NotificationRead.user_id == user_of(tenant),
            ),
        )
        .where(_visible(tenant), NotificationRead.read_at.is_(None))
    ).scalar_one()


def mark_read(session: Session, *, tenant: Tenant, ids: Sequence[uuid.UUID] | None, now: datetime) -> int:
    """Mark these (or, with ``ids=None``, all visible) notifications read for the caller; returns how many."""
    user_id = user_of(tenant)
    stmt = (
        select(Notification.id)
        .outerjoin(
            NotificationRead,
            and_(NotificationRead.notification_id == Notification.id, NotificationRead.user_id == user_id),
        )
        .where(_visible(tenant), NotificationRead.read_at.is_(None))
    )
    if ids is not None:
        wanted = set(ids)
        stmt = stmt.where(Notification.id.in_(wanted))
        visible_ids = set(
            session.execute(
                select(Notification.id).where(_visible(tenant), Notification.id.in_(wanted))
            ).scalars()
        )
        missing = wanted - visible_ids
        if missing:
            raise NotFoundError("notification", sorted(missing, key=str)[0])
    unread_ids = list(session.execute(stmt).scalars())
    session.add_all(
        NotificationRead(notification_id=i, user_id=user_id, org_id=tenant.org_id, read_at=now)
        for i in unread_ids
    )
    session.flush()
    return len(unread_ids)


# --- accuracy alerts ----------------------------------------------------------------------------------------


def get_rule(session: Session, *, org_id: uuid.UUID) -> AccuracyAlertRule | None:
    return session.get(AccuracyAlertRule, org_id)


def put_rule(session: Session, *, tenant: Tenant, data: dict[str, Any], now: datetime) -> AccuracyAlertRule:
    if not 0 < data["threshold"] <= 1:
        raise InvalidInputError("body.threshold", "must be a share between 0 (exclusive) and 1")
    rule = session.get(AccuracyAlertRule, tenant.org_id)
    if rule is None:
        rule = AccuracyAlertRule(org_id=tenant.org_id)
        session.add(rule)
    for name, value in data.items():
        setattr(rule, name, value)
    rule.updated_at = now
    rule.updated_by = tenant.actor
    session.flush()
    return rule


def check_accuracy(session: Session, *, org_id: uuid.UUID, now: datetime) -> list[Notification]:
    """Alert once per window for each custom GPT / GPT model whose low-accuracy share crossed the rule."""
    rule = session.get(AccuracyAlertRule, org_id)
    if rule is None or not rule.enabled:
        return []
    since = now - timedelta(days=rule.window_days)
    low = func.sum(case((AccuracyLevel.score <= rule.low_score_max, 1), else_=0))
    created: list[Notification] = []
    for label, column, table in (
        ("custom GPT", Output.custom_gpt_id, CustomGpt),
        ("GPT model", Output.gpt_model_id, GptModel),
    ):
        rows = session.execute(
            select(column, func.count(), low)
            .join(AccuracyLevel, AccuracyLevel.id == Output.accuracy_level_id)
            .where(
                Output.org_id == org_id,
                Output.deleted.is_(False),
                Output.created_at >= since,
                column.is_not(None),
            )
            .group_by(column)
        ).all()
        for subject_id, total, low_count in rows:
            share = (low_count or 0) / total
            if total < rule.min_outputs or share < rule.threshold:
                continue
            subject = f"{table.__tablename__}:{subject_id}"
            already = session.execute(
                select(Notification.id).where(
                    Notification.org_id == org_id,
                    Notification.kind == ACCURACY_ALERT,
                    Notification.subject == subject,
                    Notification.created_at >= since,
                )
            ).first()
            if already:
                continue
            name = session.execute(select(table.name).where(table.id == subject_id)).scalar_one_or_none()
            created.append(
                notify(
                    session,
                    org_id=org_id,
                    kind=ACCURACY_ALERT,
                    title=f"{label} {name or subject_id}: {share:.0%} low-accuracy outputs",
                    body=f"{low_count} of {total} rated outputs in the last {rule.window_days} days scored "
                    f"at "
                    f"most {rule.low_score_max} (alert threshold {rule.threshold:.0%}).",
                    data={
                        "subject_type": table.__tablename__,
                        "subject_id": str(subject_id),
                        "share": share,
                        "low": low_count,
                        "total": total,
                        "threshold": rule.threshold,
                        "window_days": rule.window_days,
                    },
                    subject=subject,
                    now=now,
                )
            )
    return created
