"""Benchmarks for Output Hub: run ``python -m bench.api`` (or ``python -m bench``) from the repo root."""

from __future__ import annotations
