"""Gap detection on MongoDB: aggregation pipelines with ``$setWindowFields`` and ``$shift``."""

from __future__ import annotations

import itertools
from typing import Any, Protocol

from binance_extractor.kinds import Dataset
from binance_extractor.sinks.gap_dialect import FAR, FUNDING_NEIGHBOURS, FundingPair, GapQueries
from binance_extractor.timeutil import dt_to_ms, ms_to_dt


class MongoAggregates(Protocol):
    """What the Mongo gap dialect asks of a store (public; ``mongo.MongoStore`` has it), so this module needs
    nothing from ``mongo.py`` (which imports it)."""

    def aggregate(self, dataset: Dataset, pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]: ...


class MongoGapQueries(GapQueries):
    """The same questions as aggregation pipelines (``$setWindowFields`` + ``$shift``) on a Mongo store."""

    def __init__(self, sink: MongoAggregates) -> None:
        self.sink = sink

    def _agg(self, dataset: Dataset, pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.sink.aggregate(dataset, pipeline)

    @staticmethod
    def _ms(value: Any) -> int:
        return dt_to_ms(value)

    def _match(self, dataset: Dataset, symbol: str, lo: int, hi: int) -> tuple[dict[str, Any], str, str]:
        spec = dataset.spec
        tcol = spec.time_column or ""
        flt = {"$match": {"symbol": symbol, tcol: {"$gte": ms_to_dt(lo), "$lt": ms_to_dt(hi)}}}
        return flt, tcol, spec.order_column

    def stats(self, dataset: Dataset, symbol: str, lo: int, hi: int) -> tuple[int, int | None, int | None]:
        match, tcol, order = self._match(dataset, symbol, lo, hi)
        group = {"$group": {"_id": None, "n": {"$sum": 1}, "lo": {"$min": f"${order}"}, "hi": {"$max": f"${order}"}}}
        docs = self._agg(dataset, [match, group])
        if not docs or not docs[0]["n"]:
            return 0, None, None
        d = docs[0]
        if order == tcol:
            return int(d["n"]), self._ms(d["lo"]), self._ms(d["hi"])
        return int(d["n"]), int(d["lo"]), int(d["hi"])

    @staticmethod
    def _window(order: str, fields: dict[str, tuple[str, int]]) -> dict[str, Any]:
        output = {name: {"$shift": {"output": f"${src}", "by": by}} for name, (src, by) in fields.items()}
        return {"$setWindowFields": {"partitionBy": "$symbol", "sortBy": {order: 1}, "output": output}}

    def kline_pairs(self, dataset: Dataset, symbol: str, lo: int, hi: int, step_ms: int) -> list[tuple[int, int]]:
        match, c, _ = self._match(dataset, symbol, lo, hi)
        pipeline = [
            match,
            self._window(c, {"prev": (c, -1)}),
            {"$match": {"prev": {"$ne": None}}},
            {"$project": {"_id": 0, "prev": 1, "cur": f"${c}", "d": {"$subtract": [f"${c}", "$prev"]}}},
            {"$match": {"d": {"$gt": step_ms}}},
            {"$sort": {"cur": 1}},
        ]
        return [(self._ms(d["prev"]), self._ms(d["cur"])) for d in self._agg(dataset, pipeline)]

    def event_pairs(
        self, dataset: Dataset, symbol: str, lo: int, hi: int, default_ms: int, tol_ms: int
    ) -> list[FundingPair]:
        match, c, _ = self._match(dataset, symbol, lo, hi)
        n = FUNDING_NEIGHBOURS
        shifts = {f"b{k}": (c, -k) for k in range(1, n + 2)} | {f"a{k}": (c, k) for k in range(1, n + 1)}

        def gap(x: str, y: str) -> dict[str, Any]:
            both = {
                "$and": [{"$ne": [{"$ifNull": [f"${x}", None]}, None]}, {"$ne": [{"$ifNull": [f"${y}", None]}, None]}]
            }
            return {"$cond": [both, {"$subtract": [f"${y}", f"${x}"]}, FAR]}

        after = ["cur", *(f"a{k}" for k in range(1, n + 1))]
        before = [f"b{k}" for k in range(n + 1, 0, -1)]
        far = {"$gte": ["$eb", FAR]}
        expected = {
            "$switch": {
                "branches": [
                    {"case": {"$and": [far, {"$gte": ["$ea", FAR]}]}, "then": int(default_ms)},
                    {"case": far, "then": "$ea"},
                    {"case": {"$gte": ["$ea", FAR]}, "then": "$eb"},
                ],
                "default": {"$max": ["$eb", "$ea"]},
            }
        }
        pipeline = [
            match,
            self._window(c, shifts),
            {"$match": {"b1": {"$ne": None}}},
            {"$set": {"cur": f"${c}"}},
            {
                "$set": {
                    "eb": {"$min": [gap(x, y) for x, y in itertools.pairwise(before)]},
                    "ea": {"$min": [gap(x, y) for x, y in itertools.pairwise(after)]},
                    "d": {"$subtract": ["$cur", "$b1"]},
                }
            },
            {"$set": {"expected": expected}},
            {"$match": {"$expr": {"$gt": ["$d", {"$add": ["$expected", int(tol_ms)]}]}}},
            {"$sort": {"cur": 1}},
        ]
        out: list[FundingPair] = []
        for d in self._agg(dataset, pipeline):
            prev, cur = self._ms(d["b1"]), self._ms(d["cur"])
            first, last = d.get(f"b{n + 1}"), d.get(f"a{n}")
            ctx = (prev if first is None else self._ms(first), cur if last is None else self._ms(last))
            out.append(FundingPair(prev, cur, int(d["expected"]), ctx))
        return out

    def id_pairs(self, dataset: Dataset, symbol: str, lo: int, hi: int) -> list[tuple[int, int, int, int]]:
        match, c, i = self._match(dataset, symbol, lo, hi)
        pipeline = [
            match,
            self._window(i, {"prev_id": (i, -1), "prev_t": (c, -1)}),
            {"$match": {"prev_id": {"$ne": None}}},
            {"$project": {"_id": 0, "prev_id": 1, "prev_t": 1, "cur_id": f"${i}", "cur_t": f"${c}"}},
            {"$match": {"$expr": {"$gt": [{"$subtract": ["$cur_id", "$prev_id"]}, 1]}}},
            {"$sort": {"cur_id": 1}},
        ]
        return [
            (int(d["prev_id"]), int(d["cur_id"]), self._ms(d["prev_t"]), self._ms(d["cur_t"]))
            for d in self._agg(dataset, pipeline)
        ]
