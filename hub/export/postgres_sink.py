"""The reference consumer: keeps jobs, orders and stock in PostgreSQL in step with the hub's event stream.

Run as ``farmhand export postgres --from-stream farmhand:events --dsn postgresql://…``. Each batch is one
PostgreSQL transaction: an event is applied only if its id is new to ``applied_events`` (so an event the
stream hands out again — after a crash before XACK, or a replay — changes nothing), and state rows are
upserted only by a newer event than the one they hold. The batch is acknowledged in Redis after the commit.
"""

from __future__ import annotations

from typing import Any

import psycopg
import structlog
from psycopg import sql

from .stream_consumer import StreamConsumer, StreamEvent

log = structlog.get_logger("farmhand.export.postgres")

TABLES = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.applied_events (
    event_id BIGINT PRIMARY KEY, type TEXT NOT NULL, applied_seq BIGSERIAL, applied_at TIMESTAMPTZ DEFAULT now());
CREATE TABLE IF NOT EXISTS {schema}.jobs (
    job_id BIGINT PRIMARY KEY, name TEXT, state TEXT, file_sha256 TEXT, node TEXT, device TEXT, attempt INT,
    progress DOUBLE PRECISION, error TEXT, order_id BIGINT, last_event_id BIGINT NOT NULL, updated_at TEXT);
CREATE TABLE IF NOT EXISTS {schema}.orders (
    order_id BIGINT PRIMARY KEY, customer TEXT, reference TEXT, deadline TEXT, price DOUBLE PRECISION,
    created_at TEXT, cancelled_at TEXT, last_stage TEXT, last_event_id BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS {schema}.stock_bookings (
    job_id BIGINT, attempt INT, spool_id BIGINT, grams DOUBLE PRECISION, booked_at TEXT, PRIMARY KEY (job_id, attempt));
CREATE TABLE IF NOT EXISTS {schema}.spools (
    spool_id BIGINT PRIMARY KEY, material TEXT, initial_weight DOUBLE PRECISION, used_weight DOUBLE PRECISION,
    remaining_weight DOUBLE PRECISION, archived BOOLEAN, node TEXT, device TEXT, last_event_id BIGINT NOT NULL);
"""

JOB = """INSERT INTO {schema}.jobs AS t (job_id, name, state, file_sha256, node, device, attempt, progress, error,
    order_id, last_event_id, updated_at) VALUES (%(job_id)s, %(name)s, %(state)s, %(file_sha256)s, %(node)s,
    %(device)s, %(attempt)s, %(progress)s, %(error)s, %(order_id)s, %(event_id)s, %(time)s)
    ON CONFLICT (job_id) DO UPDATE SET name = excluded.name, state = excluded.state, node = excluded.node,
    device = excluded.device, attempt = excluded.attempt, progress = excluded.progress, error = excluded.error,
    order_id = excluded.order_id, last_event_id = excluded.last_event_id, updated_at = excluded.updated_at
    WHERE t.last_event_id < excluded.last_event_id"""
PROGRESS = """UPDATE {schema}.jobs SET progress = %(progress)s, last_event_id = %(event_id)s, updated_at = %(time)s
    WHERE job_id = %(job_id)s AND last_event_id < %(event_id)s"""
ORDER = """INSERT INTO {schema}.orders AS t (order_id, customer, reference, deadline, price, created_at, cancelled_at,
    last_event_id) VALUES (%(order_id)s, %(customer)s, %(reference)s, %(deadline)s, %(price)s, %(created_at)s,
    %(cancelled_at)s, %(event_id)s)
    ON CONFLICT (order_id) DO UPDATE SET cancelled_at = excluded.cancelled_at, last_event_id = excluded.last_event_id
    WHERE t.last_event_id < excluded.last_event_id"""
STAGE = """UPDATE {schema}.orders SET last_stage = %(stage)s, last_event_id = %(event_id)s
    WHERE order_id = %(order_id)s AND last_event_id < %(event_id)s"""
BOOKING = """INSERT INTO {schema}.stock_bookings (job_id, attempt, spool_id, grams, booked_at)
    VALUES (%(job_id)s, %(attempt)s, %(spool_id)s, %(grams)s, %(booked_at)s) ON CONFLICT DO NOTHING"""
SPOOL = """INSERT INTO {schema}.spools AS t (spool_id, material, initial_weight, used_weight, remaining_weight,
    archived, node, device, last_event_id) VALUES (%(spool_id)s, %(material)s, %(initial_weight)s, %(used_weight)s,
    %(remaining_weight)s, %(archived)s, %(node)s, %(device)s, %(event_id)s)
    ON CONFLICT (spool_id) DO UPDATE SET used_weight = excluded.used_weight,
    remaining_weight = excluded.remaining_weight, archived = excluded.archived, node = excluded.node,
    device = excluded.device, last_event_id = excluded.last_event_id WHERE t.last_event_id < excluded.last_event_id"""


def statement_for(event_type: str) -> str | None:
    """The SQL an event type is applied with; None: this consumer does not keep that kind."""
    family = event_type.split(".", 1)[0]
    if event_type == "job.progress":
        return PROGRESS
    if family == "job":
        return JOB
    if event_type == "order.stage":
        return STAGE
    if family == "order":
        return ORDER
    return {"stock.booked": BOOKING, "stock.spool": SPOOL}.get(event_type)


class PostgresSink:
    def __init__(self, consumer: StreamConsumer, dsn: str, schema: str = "farmhand") -> None:
        self.consumer = consumer
        self.dsn = dsn
        self.schema = sql.Identifier(schema)
        self.applied = 0
        self.repeated = 0

    def _sql(self, template: str) -> sql.Composed:
        return sql.SQL(template).format(schema=self.schema)

    async def run(self, until_idle: bool = False) -> None:
        """Apply batches until cancelled (``until_idle``: until the stream has nothing new)."""
        async with await psycopg.AsyncConnection.connect(self.dsn) as conn:
            async with conn.transaction():
                await conn.execute(self._sql(TABLES))
            await self.consumer.ensure_group()
            async for batch in self.consumer.batches(idle_stop=until_idle):
                async with conn.transaction():
                    for item in batch:
                        await self._apply(conn, item)
                await self.consumer.ack(batch)
                log.info("postgres_sink_batch", events=len(batch), last=batch[-1].event["id"],
                         applied=self.applied, repeated=self.repeated)

    async def _apply(self, conn: psycopg.AsyncConnection[Any], item: StreamEvent) -> None:
        event = item.event
        fresh = await conn.execute(
            self._sql("INSERT INTO {schema}.applied_events (event_id, type) VALUES (%s, %s)"
                      " ON CONFLICT DO NOTHING RETURNING event_id"), (event["id"], event["type"]))
        if await fresh.fetchone() is None:
            self.repeated += 1
            return
        self.applied += 1
        statement = statement_for(event["type"])
        if statement is not None:
            await conn.execute(self._sql(statement), {**event["payload"], "event_id": event["id"],
                                                      "time": event["time"]})
