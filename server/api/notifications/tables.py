"""Notifications, who has read them, and the accuracy alert rule of each organization (tenant-scoped, RLS)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import Uuid

from outputhub.server.storage.tables import TS, Base


class Notification(Base):
    """For one user (``user_id``) or for every member with at least ``min_role``."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_org_created", "org_id", "created_at"),
        Index("ix_notifications_org_subject", "org_id", "kind", "subject"),
    )
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[str] = mapped_column(Text, default="{}")
    subject: Mapped[str | None] = mapped_column(String(200))
    """What it is about (dedupes repeated alerts), e.g. ``custom_gpt:<id>``."""
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    min_role: Mapped[str] = mapped_column(String(16), default="viewer")
    created_at: Mapped[datetime] = mapped_column(TS)


class NotificationRead(Base):
    __tablename__ = "notification_reads"
    notification_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    read_at: Mapped[datetime] = mapped_column(TS)


class AccuracyAlertRule(Base):
    """Alert when a custom GPT's or GPT model's share of low-accuracy outputs in the window crosses it."""

    __tablename__ = "accuracy_alert_rules"
    org_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    threshold: Mapped[float] = mapped_column(Float)
    """0..1: the share of rated outputs that are low-accuracy."""
    low_score_max: Mapped[int] = mapped_column(Integer, default=40)
    """An output is low-accuracy when its accuracy level's score is at most this."""
    window_days: Mapped[int] = mapped_column(Integer, default=7)
    min_outputs: Mapped[int] = mapped_column(Integer, default=5)
    updated_at: Mapped[datetime] = mapped_column(TS)
    updated_by: Mapped[str] = mapped_column(String(64))
