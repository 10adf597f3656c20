"""``python -m binance_extractor setup-airflow``: what a fresh Airflow needs before the DAGs can run.

One idempotent command for every deployment (``make run``, the Helm post-install hook Job, a shell): the
``binance_api`` pool sized from config (``kubernetes.pool_slots`` / ``BINANCE_API_POOL_SLOTS``), the Variable
``binance_symbols`` (created with the configured symbols, never overwritten: operators edit it in the UI) and the
``binance_default`` connection (created with the environment's base URL and key if the metadata DB has none and no
``AIRFLOW_CONN_BINANCE_DEFAULT`` supplies it, so the UI shows it with its Test button; an existing one is left
alone). Needs Airflow's metadata DB (migrated).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from binance_extractor import config
from binance_extractor.airflow import jobspecs, orchestration

POOL_DESCRIPTION = "Binance API requesters: bounds concurrent exchange calls"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "setup-airflow",
        help="Create the binance_api pool, the binance_symbols Variable and the binance_default connection.",
        description="Idempotent: run it after every install or upgrade. Prints one JSON line per object.",
    )
    p.add_argument("--pool-slots", type=int, help="binance_api slots (default: BINANCE_API_POOL_SLOTS or config)")
    p.add_argument("--binance-conn-id", default=jobspecs.BINANCE_CONN_ID, help="connection to create if absent")
    p.add_argument("--xcom-file", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from binance_extractor.errors import InputError

    slots = config.pool_slots() if args.pool_slots is None else args.pool_slots
    if slots < 1:
        raise InputError(f"--pool-slots must be at least 1, not {slots}")
    from airflow.models import Connection, Pool, Variable
    from airflow.utils.session import create_session
    from sqlalchemy import select

    out: list[dict[str, Any]] = []
    with create_session() as session:
        pool = session.scalar(select(Pool).where(Pool.pool == orchestration.POOL))
        if pool is None or pool.slots != slots:
            action = "created" if pool is None else "updated"
            Pool.create_or_update_pool(orchestration.POOL, slots, POOL_DESCRIPTION, False, session=session)
        else:
            action = "unchanged"
        out.append({"object": "pool", "name": orchestration.POOL, "slots": slots, "action": action})

        var = session.scalar(select(Variable).where(Variable.key == orchestration.SYMBOLS_VARIABLE))
        if var is None:
            symbols = list(config.settings().symbols)
            session.add(
                Variable(
                    key=orchestration.SYMBOLS_VARIABLE,
                    val=json.dumps(symbols),
                    description="Symbols every Binance DAG extracts (JSON array or comma-separated)",
                )
            )
            out.append({"object": "variable", "name": orchestration.SYMBOLS_VARIABLE, "action": "created"})
        else:
            out.append({"object": "variable", "name": orchestration.SYMBOLS_VARIABLE, "action": "unchanged"})

        conn = session.scalar(select(Connection).where(Connection.conn_id == args.binance_conn_id))
        env_var = f"AIRFLOW_CONN_{args.binance_conn_id.upper()}"
        if conn is None and os.environ.get(env_var):
            # The Secret supplies it (Helm: AIRFLOW_CONN_BINANCE_DEFAULT); a DB copy would only shadow-confuse.
            out.append({"object": "connection", "name": args.binance_conn_id, "action": f"from {env_var}"})
        elif conn is None:
            session.add(
                Connection(
                    conn_id=args.binance_conn_id,
                    conn_type="binance",
                    description="Binance USD-M Futures REST API (host: base URL, password: API key)",
                    host=config.base_url(),
                    password=config.api_key(),
                )
            )
            out.append({"object": "connection", "name": args.binance_conn_id, "action": "created"})
        else:
            out.append({"object": "connection", "name": args.binance_conn_id, "action": "unchanged"})
    return out
