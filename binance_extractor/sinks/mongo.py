"""MongoDB sink through Airflow's ``MongoHook``: same collection names and keys as the SQL tables.

Each collection has a unique compound index on the key; decimals are Decimal128 (exact: a value it cannot
hold raises instead of rounding), times are BSON dates read back as aware UTC.

Atomicity: a standalone MongoDB has no multi-document transaction, so ``write`` converts the whole batch
first (a bad value fails before anything is sent) and then sends one unordered ``bulk_write`` of upserts.
If the server fails part-way, some upserts may be applied: the caller re-runs the same range and the
upserts converge to exactly one document per key (nothing duplicated, the exchange's final values win).
"""

from __future__ import annotations

import contextlib
import decimal
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from binance_extractor import clock, db_timeouts
from binance_extractor.catalog import AUDIT_TABLE, LEDGER_TABLE, STORES
from binance_extractor.errors import SinkError
from binance_extractor.sinks import base as _base
from binance_extractor.sinks.base import (
    GapRecord,
    Row,
    RunRecord,
    Store,
    call_with_retry,
    check_block,
    check_rows,
    is_data_table,
    one_line,
    utc_ms,
)
from binance_extractor.sinks.mongo_gaps import MongoGapQueries
from binance_extractor.sinks.schema import MIGRATIONS, SCHEMA_TABLE, ColType, TableSpec, spec_for

if TYPE_CHECKING:
    from binance_extractor.archive_columns import KlineBlock
    from binance_extractor.kinds import Dataset

DEFAULT_CONN_ID = STORES["mongo"].default_conn_id
DEFAULT_DB = "binance"
T = TypeVar("T")


class MongoStore(Store):
    name = "mongo"

    def __init__(
        self,
        conn_id: str = DEFAULT_CONN_ID,
        retry_attempts: int | None = None,
        server_timeout_ms: int = 5000,
        retry_max_wait: float = 8.0,
    ) -> None:
        self.conn_id = conn_id
        self._hook: Any = None
        self._db: Any = None
        self._attempts = _base.retry_attempts(retry_attempts)
        self._timeout_ms = server_timeout_ms
        self._max_wait = retry_max_wait
        self._schema_ok = False
        self._collections: set[str] = set()
        self.where = conn_id

    # ---- connection --------------------------------------------------------------------------------
    def _database(self) -> Any:
        if self._db is None:
            from airflow.providers.mongo.hooks.mongo import MongoHook
            from airflow.sdk.exceptions import AirflowNotFoundException
            from bson.codec_options import CodecOptions

            try:
                hook = MongoHook(mongo_conn_id=self.conn_id)
            except AirflowNotFoundException:
                raise SinkError(f"mongo sink: connection id {self.conn_id!r} is not defined") from None
            except Exception as exc:  # the hook refuses a wrong scheme (mongodb://) with a config error
                raise SinkError(f"mongo sink ({self.conn_id}): {one_line(str(exc))}") from None
            # pymongo's own timeouts, each overridable by the connection's extra of the same name (db_timeouts)
            own = {"serverSelectionTimeoutMS": self._timeout_ms, "connectTimeoutMS": self._timeout_ms}
            for key, value in {**db_timeouts.MONGO, **own}.items():
                hook.extras.setdefault(key, value)
            c = hook.connection
            name = c.schema or DEFAULT_DB
            self.where = f"{c.host}:{c.port or 27017}/{name}"
            self._secret = c.password
            self._hook = hook
            self._db = hook.get_conn().get_database(name, codec_options=CodecOptions(tz_aware=True, tzinfo=UTC))
        return self._db

    def database(self) -> Any:
        """The pymongo Database (tz-aware UTC codec), for other modules' aggregations (gap detection)."""
        return self._database()

    def _reset(self) -> None:
        """pymongo reconnects by itself; only a broken client is dropped."""

    def close(self) -> None:
        hook, self._hook, self._db = self._hook, None, None
        if hook is not None and hook.client is not None:
            hook.client.close()
            hook.client = None

    def _call(self, fn: Callable[[Any], T]) -> T:
        from pymongo.errors import ConnectionFailure, PyMongoError

        return call_with_retry(
            lambda: fn(self._database()),
            transient=lambda e: isinstance(e, ConnectionFailure),
            persistent=(PyMongoError,),
            reset=self._reset,
            describe=self._describe,
            attempts=self._attempts,
            max_wait=self._max_wait,
        )

    def _describe(self, exc: BaseException | None) -> str:
        text = getattr(exc, "_message", None) or str(exc)
        for noise in (" (configured timeouts", ", Topology Description"):  # pymongo's long topology dump
            text = text.split(noise)[0]
        text = one_line(text, [getattr(self, "_secret", None)])[:300]
        return f"mongo sink ({self.where}, conn id {self.conn_id}): {type(exc).__name__}: {text}"

    # ---- schema ------------------------------------------------------------------------------------
    def ensure_schema(self, target: int | None = None) -> None:
        from pymongo.errors import DuplicateKeyError

        def run(db: Any) -> None:
            done = {int(d["_id"]) for d in db[SCHEMA_TABLE].find({}, {"_id": 1})}
            for mig in MIGRATIONS:
                if mig.version in done or (target is not None and mig.version > target):
                    continue
                for table in mig.tables:
                    self._create(db, spec_for(table))
                for index in mig.indexes:
                    db[index.table].create_index([(c, 1) for c in index.columns], name=index.name)
                for table, column, value in mig.fills:  # documents have no columns to add, only values to set
                    db[table].update_many({column: None}, {"$set": {column: value}})
                # Another process may apply it at the same time; every step is idempotent, so that is fine.
                with contextlib.suppress(DuplicateKeyError):
                    db[SCHEMA_TABLE].insert_one({"_id": mig.version, "name": mig.name, "applied_at": clock.now()})

        self._call(run)
        self._schema_ok = target is None

    def _create(self, db: Any, spec: TableSpec) -> None:
        db[spec.name].create_index([(k, 1) for k in spec.key], name="pk", unique=True)
        self._collections.add(spec.name)

    def schema_version(self) -> int:
        docs = self._call(lambda db: list(db[SCHEMA_TABLE].find({}, {"_id": 1})))
        return max((int(d["_id"]) for d in docs), default=0)

    def _ready(self, dataset: Dataset) -> TableSpec:
        """``dataset``'s collection spec (from the catalog, no name parsed), its index created on first use."""
        return self._prepare(dataset.table, dataset.spec)

    def _prepare(self, table: str, spec: TableSpec | None = None) -> TableSpec:
        spec = spec_for(table) if spec is None else spec
        if not self._schema_ok:
            self.ensure_schema()
        if table not in self._collections:
            self._call(lambda db: self._create(db, spec))
        return spec

    # ---- conversion --------------------------------------------------------------------------------
    @staticmethod
    def _to_db(type_: ColType, value: Any) -> Any:
        from bson.decimal128 import Decimal128

        if value is None:
            return None
        if type_ == "dec":
            return Decimal128(value)
        if type_ == "time":
            return utc_ms(value)
        return value

    @staticmethod
    def _from_db(spec: TableSpec, doc: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for c in spec.columns:
            v = doc.get(c.name)
            if v is not None and c.type == "dec":
                v = v.to_decimal()
            out[c.name] = v
        return out

    def _doc(self, spec: TableSpec, row: Any) -> dict[str, Any]:
        """Model or dict -> document; model times are validated aware UTC ms already, so they go as is."""
        from bson.decimal128 import Decimal128

        try:
            if isinstance(row, dict):
                return {c.name: self._to_db(c.type, row[c.name]) for c in spec.columns}
            doc = {}
            for c in spec.columns:
                v = getattr(row, c.name)
                doc[c.name] = Decimal128(v) if c.type == "dec" and v is not None else v
            return doc
        except (decimal.Inexact, decimal.InvalidOperation, decimal.Overflow) as exc:
            raise SinkError(
                f"mongo sink ({self.where}): a value in {spec.name} does not fit Decimal128 exactly "
                f"({type(exc).__name__}); nothing of the batch was written"
            ) from None

    # ---- writes ------------------------------------------------------------------------------------
    def write(self, dataset: Dataset, rows: Sequence[Row]) -> int:
        if not rows:
            return 0
        check_rows(dataset, rows)
        spec = self._ready(dataset)
        docs = [self._doc(spec, r) for r in rows]  # convert everything before sending anything
        return self._upsert_docs(spec.name, spec, docs)

    def write_block(self, dataset: Dataset, block: KlineBlock) -> int:
        """Unordered bulk upserts of the block's documents (decimal strings straight into Decimal128)."""
        check_block(dataset, block)
        if not len(block):
            return 0
        spec = self._ready(dataset)
        docs = [self._doc(spec, d) for d in block.dicts()]
        return self._upsert_docs(spec.name, spec, docs)

    def _upsert_docs(self, table: str, spec: TableSpec, docs: list[dict[str, Any]]) -> int:
        from pymongo import UpdateOne
        from pymongo.errors import BulkWriteError

        ops = [UpdateOne({k: d[k] for k in spec.key}, {"$set": d}, upsert=True) for d in docs]

        def run(db: Any) -> int:
            pending = ops
            for _ in range(5):
                try:
                    db[table].bulk_write(pending, ordered=False)
                    return len(ops)
                except BulkWriteError as exc:
                    errors = exc.details.get("writeErrors", [])
                    # Two writers upserting the same new key race on the unique index: re-send those upserts.
                    if errors and all(e.get("code") == 11000 for e in errors):
                        pending = [pending[e["index"]] for e in errors]
                        continue
                    first = errors[0].get("errmsg", "") if errors else str(exc)
                    raise SinkError(
                        f"mongo sink ({self.where}): bulk write to {table} failed ({len(errors)} errors): "
                        f"{one_line(first)[:200]}; re-run the range (upserts are idempotent)"
                    ) from None
            raise SinkError(f"mongo sink ({self.where}): duplicate-key races on {table} did not settle")

        return self._call(run)

    def _upsert(self, table: str, values: dict[str, Any]) -> None:
        spec = self._prepare(table)
        doc = self._doc(spec, values)
        self._call(lambda db: db[table].update_one({k: doc[k] for k in spec.key}, {"$set": doc}, upsert=True))

    # ---- reads -------------------------------------------------------------------------------------
    def _filter(
        self, spec: TableSpec, symbol: str | None, start: datetime | None, end: datetime | None
    ) -> dict[str, Any]:
        flt: dict[str, Any] = {}
        if symbol is not None:
            flt["symbol"] = symbol
        rng: dict[str, Any] = {}
        if start is not None:
            rng["$gte"] = utc_ms(start)
        if end is not None:
            rng["$lt"] = utc_ms(end)
        if rng:
            flt[spec.time_column or spec.order_column] = rng
        return flt

    def _edge(self, dataset: Dataset, symbol: str, direction: int) -> datetime | None:
        spec = self._ready(dataset)
        tcol = spec.time_column or ""
        doc = self._call(
            lambda db: db[spec.name].find_one(
                {"symbol": symbol}, {tcol: 1, "_id": 0}, sort=[("symbol", direction), (spec.order_column, direction)]
            )
        )
        return None if doc is None else utc_ms(doc[tcol])

    def last_time(self, dataset: Dataset, symbol: str) -> datetime | None:
        return self._edge(dataset, symbol, -1)

    def first_time(self, dataset: Dataset, symbol: str) -> datetime | None:
        return self._edge(dataset, symbol, 1)

    def count(
        self, dataset: Dataset, symbol: str | None = None, start: datetime | None = None, end: datetime | None = None
    ) -> int:
        spec = self._ready(dataset)
        flt = self._filter(spec, symbol, start, end)
        return int(self._call(lambda db: db[spec.name].count_documents(flt)))

    def read(
        self, dataset: Dataset, symbol: str, start: datetime | None = None, end: datetime | None = None
    ) -> list[dict[str, Any]]:
        spec = self._ready(dataset)
        flt = self._filter(spec, symbol, start, end)
        docs = self._call(lambda db: list(db[spec.name].find(flt, {"_id": 0}).sort(spec.order_column, 1)))
        rows = [self._from_db(spec, d) for d in docs]
        if dataset.timeframe is not None:
            interval = dataset.timeframe.interval
            for r in rows:
                r["interval"] = interval
        return rows

    # ---- audit and ledger --------------------------------------------------------------------------
    def record_run(self, run: RunRecord) -> None:
        self._upsert(AUDIT_TABLE, run.as_row())

    def runs(self, limit: int = 100) -> list[RunRecord]:
        spec = self._prepare(AUDIT_TABLE)
        docs = self._call(
            lambda db: list(db[AUDIT_TABLE].find({}, {"_id": 0}).sort("started_at", -1).limit(int(limit)))
        )
        return [RunRecord.from_row(self._from_db(spec, d)) for d in docs]

    def has_success(self, dataset: Dataset, symbol: str) -> bool:
        self._prepare(AUDIT_TABLE)
        flt = {"table_name": dataset.table, "symbol": symbol, "outcome": "success"}
        return self._call(lambda db: db[AUDIT_TABLE].find_one(flt, {"_id": 1})) is not None

    def record_gap(self, gap: GapRecord) -> None:
        spec_for(gap.table)
        self._upsert(LEDGER_TABLE, gap.as_row())

    def gap_records(self, dataset: Dataset | None = None, symbol: str | None = None) -> list[GapRecord]:
        self._prepare(LEDGER_TABLE)
        table = None if dataset is None else dataset.table
        flt = {k: v for k, v in (("table_name", table), ("symbol", symbol)) if v is not None}
        order = [("table_name", 1), ("symbol", 1), ("gap_start", 1)]
        docs = self._call(lambda db: list(db[LEDGER_TABLE].find(flt, {"_id": 0}).sort(order)))
        return [GapRecord.from_row(d) for d in docs]

    def delete_gap(self, dataset: Dataset, symbol: str, gap_start: datetime) -> None:
        self._prepare(LEDGER_TABLE)
        key = {"table_name": dataset.table, "symbol": symbol, "gap_start": utc_ms(gap_start)}
        self._call(lambda db: db[LEDGER_TABLE].delete_one(key))

    def recent_runs(self, dataset: Dataset, symbol: str, limit: int) -> list[RunRecord]:
        """Through the (table_name, symbol, started_at) index, newest first."""
        docs = self._call(
            lambda db: list(
                db[AUDIT_TABLE]
                .find({"table_name": dataset.table, "symbol": symbol}, {"_id": 0})
                .sort("started_at", -1)
                .limit(limit)
            )
        )
        spec = spec_for(AUDIT_TABLE)
        return [RunRecord.from_row(self._from_db(spec, d)) for d in docs]

    def record_runs(self, runs: Sequence[RunRecord]) -> int:
        spec = self._prepare(AUDIT_TABLE)
        return self._upsert_docs(AUDIT_TABLE, spec, [self._doc(spec, r.as_row()) for r in runs]) if runs else 0

    def record_gaps(self, gaps: Sequence[GapRecord]) -> int:
        for gap in gaps:
            spec_for(gap.table)
        spec = self._prepare(LEDGER_TABLE)
        return self._upsert_docs(LEDGER_TABLE, spec, [self._doc(spec, g.as_row()) for g in gaps]) if gaps else 0

    def runs_page(self, after: str | None, limit: int) -> list[RunRecord]:
        spec = self._prepare(AUDIT_TABLE)
        flt = {} if after is None else {"run_id": {"$gt": after}}
        docs = self._call(lambda db: list(db[AUDIT_TABLE].find(flt, {"_id": 0}).sort("run_id", 1).limit(int(limit))))
        return [RunRecord.from_row(self._from_db(spec, d)) for d in docs]

    def gaps_page(self, after: tuple[str, str, datetime] | None, limit: int) -> list[GapRecord]:
        spec = self._prepare(LEDGER_TABLE)
        flt: dict[str, Any] = {}
        if after is not None:
            table, symbol, start = after
            flt = {
                "$or": [
                    {"table_name": {"$gt": table}},
                    {"table_name": table, "symbol": {"$gt": symbol}},
                    {"table_name": table, "symbol": symbol, "gap_start": {"$gt": utc_ms(start)}},
                ]
            }
        order = [("table_name", 1), ("symbol", 1), ("gap_start", 1)]
        docs = self._call(lambda db: list(db[LEDGER_TABLE].find(flt, {"_id": 0}).sort(order).limit(int(limit))))
        return [GapRecord.from_row(self._from_db(spec, d)) for d in docs]

    def data_tables(self) -> list[str]:
        return sorted(n for n in self._call(lambda db: db.list_collection_names()) if is_data_table(n))

    def gap_queries(self) -> MongoGapQueries:
        return MongoGapQueries(self)

    def aggregate(self, dataset: Dataset, pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Run one aggregation pipeline over ``dataset``'s collection (created on first use) with the store's
        retries."""
        table = self._ready(dataset).name
        return self._call(lambda db: list(db[table].aggregate(pipeline)))

    # ---- retention ---------------------------------------------------------------------------------
    def symbols(self, dataset: Dataset) -> list[str]:
        table = self._ready(dataset).name
        return sorted(self._call(lambda db: db[table].distinct("symbol")))

    def _delete_symbol_before(self, dataset: Dataset, symbol: str, cutoff: datetime, limit: int) -> int:
        spec = self._ready(dataset)
        table, tcol = spec.name, spec.time_column or ""
        when = utc_ms(cutoff)

        def run(db: Any) -> int:
            ids = [d["_id"] for d in db[table].find({"symbol": symbol, tcol: {"$lt": when}}, {"_id": 1}).limit(limit)]
            return int(db[table].delete_many({"_id": {"$in": ids}}).deleted_count) if ids else 0

        return self._call(run)
