"""Background runners: run desktop service calls off the GUI thread and report back through Qt signals."""

from __future__ import annotations

from outputhub.desktop.jobs.runner import Job, JobRunner

__all__ = ["Job", "JobRunner"]
