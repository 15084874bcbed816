"""The Analytics view's figures, computed over the local replica (works offline)."""

from __future__ import annotations

from dataclasses import dataclass

from outputhub.desktop.storage import LookupKind, LookupRecord, Replica

NOT_SET = "(not set)"


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class StackedBars:
    """``categories`` along one axis; one ``Series`` per stacked part (same length as ``categories``)."""

    title: str
    categories: tuple[str, ...]
    series: tuple[Series, ...]

    @property
    def empty(self) -> bool:
        return not self.categories


@dataclass(frozen=True, slots=True)
class Analytics:
    outputs: int
    prompts: int
    accuracy_by_gpt_model: StackedBars
    accuracy_by_custom_gpt: StackedBars
    knowledge_types_per_month: StackedBars
    stage_funnel: tuple[tuple[str, int], ...]
    tag_usage: tuple[tuple[str, int, int], ...]  # (tag, prompts, outputs), most used first


def _stacked(title: str, rows: list[tuple[str, str, int]], *, series_order: list[str]) -> StackedBars:
    categories = sorted({c for c, _, _ in rows}, key=lambda c: (c == NOT_SET, c.lower()))
    present = {s for _, s, _ in rows}
    names = [s for s in series_order if s in present] + sorted(present - set(series_order))
    counts = {(c, s): n for c, s, n in rows}
    return StackedBars(
        title,
        tuple(categories),
        tuple(Series(s, tuple(counts.get((c, s), 0) for c in categories)) for s in names),
    )


class AnalyticsService:
    def __init__(self, *, replica: Replica) -> None:
        self._replica = replica

    def _names(self, kind: LookupKind) -> tuple[dict[str, str], list[LookupRecord]]:
        entries = self._replica.list_lookups(kind=kind, limit=100_000, include_deleted=True)
        return {e.id: e.name for e in entries}, [e for e in entries if not e.deleted]

    def compute(self) -> Analytics:
        r = self._replica
        accuracy, accuracy_entries = self._names(LookupKind.ACCURACY_LEVELS)
        ordered_levels = [
            e.name for e in sorted(accuracy_entries, key=lambda e: (-(e.score or 0), e.position))
        ]
        models, _ = self._names(LookupKind.GPT_MODELS)
        kts, _ = self._names(LookupKind.KNOWLEDGE_TYPES)
        stages, stage_entries = self._names(LookupKind.DEVELOPMENT_STAGES)
        tags, _ = self._names(LookupKind.TAGS)
        gpts = {g.id: g.name for g in r.list_custom_gpts(limit=100_000, include_deleted=True)}

        def name(table: dict[str, str], ident: str | None) -> str:
            return NOT_SET if ident is None else table.get(ident, "?")

        by_model = [
            (name(models, g), name(accuracy, a), n)
            for g, a, n in r.accuracy_distribution(group_by="gpt_model_id")
        ]
        by_gpt = [
            (name(gpts, g), name(accuracy, a), n)
            for g, a, n in r.accuracy_distribution(group_by="custom_gpt_id")
        ]
        per_month = [(m, name(kts, k), n) for m, k, n in r.outputs_by_knowledge_type_per_month()]
        stage_counts = {s: n for s, n in r.prompts_by_stage()}
        funnel = [
            (e.name, stage_counts.pop(e.id, 0)) for e in sorted(stage_entries, key=lambda e: e.position)
        ]
        funnel += sorted((name(stages, s), n) for s, n in stage_counts.items())
        usage = sorted(
            ((name(tags, t), p, o) for t, p, o in r.tag_usage()), key=lambda row: (-(row[1] + row[2]), row[0])
        )
        return Analytics(
            outputs=r.count_live(table="outputs"),
            prompts=r.count_live(table="prompts"),
            accuracy_by_gpt_model=_stacked("Accuracy by GPT model", by_model, series_order=ordered_levels),
            accuracy_by_custom_gpt=_stacked("Accuracy by custom GPT", by_gpt, series_order=ordered_levels),
            knowledge_types_per_month=_stacked(
                "Outputs by knowledge type per month", per_month, series_order=[]
            ),
            stage_funnel=tuple(funnel),
            tag_usage=tuple(usage),
        )
