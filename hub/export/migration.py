"""The outbound event log's tables and the triggers that fill it (one migration of hub/store.py).

Released text is frozen like every migration: a change is a new migration appended to MIGRATIONS.

Each trigger inserts into ``outbound_events`` inside the transaction that changed the row, so an event
exists exactly when its change committed, and the AUTOINCREMENT id (one writer: the hub's connection)
is the commit order. Payloads are built with ``json_object`` in the shapes of ``schemas.py``.
"""

NOW = "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')"

_JOB = """json_object('job_id', NEW.id, 'name', NEW.name, 'state', NEW.state, 'file_sha256', NEW.file_sha256,
    'priority', NEW.priority, 'node', NEW.node, 'device', NEW.device, 'attempt', NEW.attempt,
    'progress', NEW.progress, 'error', NEW.error,
    'order_id', (SELECT i.order_id FROM job_requirements r JOIN order_items i ON i.id = r.order_item_id
                 WHERE r.job_id = NEW.id))"""
_ORDER = """json_object('order_id', NEW.id, 'customer', NEW.customer, 'reference', NEW.reference,
    'deadline', NEW.deadline, 'price', NEW.price, 'created_at', NEW.created_at, 'cancelled_at', NEW.cancelled_at)"""
_SPOOL = """json_object('spool_id', NEW.id, 'filament_id', NEW.filament_id,
    'material', (SELECT material FROM filaments WHERE id = NEW.filament_id),
    'initial_weight', NEW.initial_weight, 'used_weight', NEW.used_weight,
    'remaining_weight', NEW.initial_weight - NEW.used_weight, 'archived', json(CASE WHEN NEW.archived THEN 'true'
    ELSE 'false' END), 'node', NEW.node, 'device', NEW.device)"""
_ALERT = """json_object('alert_id', NEW.id, 'kind', NEW.kind, 'subject', NEW.subject, 'message', NEW.message,
    'created_at', NEW.created_at, 'resolved_at', NEW.resolved_at)"""
_RENDER = """json_object('render_job_id', NEW.id, 'name', NEW.name, 'state', NEW.state,
    'frame_start', NEW.frame_start, 'frame_end', NEW.frame_end, 'error', NEW.error)"""


def _trigger(name: str, event: str, table: str, type_sql: str, payload: str, when: str = "") -> str:
    return f"""
    CREATE TRIGGER outbound_{name} AFTER {event} ON {table} {f'WHEN {when}' if when else ''}
    BEGIN
        INSERT INTO outbound_events (type, schema_version, time, payload) VALUES ({type_sql}, 1, {NOW}, {payload});
    END;"""


OUTBOUND_EVENTS_MIGRATION = """
    CREATE TABLE outbound_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        type TEXT NOT NULL,
        schema_version INTEGER NOT NULL,
        time TEXT NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE TABLE export_cursors (
        name TEXT PRIMARY KEY,
        last_id INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE webhooks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        event_types TEXT NOT NULL DEFAULT '[]',
        last_id INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        deleted_at TEXT
    );
    CREATE TABLE webhook_dead_letters (
        webhook_id INTEGER NOT NULL REFERENCES webhooks(id),
        event_id INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        error TEXT NOT NULL,
        failed_at TEXT NOT NULL,
        PRIMARY KEY (webhook_id, event_id)
    );
""" + "".join([
    _trigger("job_created", "INSERT", "jobs", "'job.' || NEW.state", _JOB),
    # Milestones: a progress update that crosses 25, 50 or 75 % (one event even when it jumps two).
    _trigger("job_progress", "UPDATE OF progress", "jobs", "'job.progress'",
             """json_object('job_id', NEW.id, 'name', NEW.name, 'milestone', CAST(NEW.progress * 4 AS INTEGER) * 25,
                'progress', NEW.progress, 'node', NEW.node, 'device', NEW.device, 'attempt', NEW.attempt)""",
             "NEW.progress < 1.0 AND CAST(NEW.progress * 4 AS INTEGER) > CAST(COALESCE(OLD.progress, 0) * 4 AS INTEGER)"),
    _trigger("job_state", "UPDATE OF state", "jobs", "'job.' || NEW.state", _JOB, "OLD.state IS NOT NEW.state"),
    _trigger("order_created", "INSERT", "orders", "'order.created'", _ORDER),
    _trigger("order_cancelled", "UPDATE OF cancelled_at", "orders", "'order.cancelled'", _ORDER,
             "OLD.cancelled_at IS NULL AND NEW.cancelled_at IS NOT NULL"),
    _trigger("order_stage", "INSERT", "order_stages", "'order.stage'",
             "json_object('order_id', NEW.order_id, 'stage', NEW.stage, 'by', NEW.by, 'at', NEW.at, "
             "'notes', NEW.notes)"),
    _trigger("stock_booked", "INSERT", "spool_usage", "'stock.booked'",
             "json_object('job_id', NEW.job_id, 'attempt', NEW.attempt, 'spool_id', NEW.spool_id, "
             "'grams', NEW.grams, 'booked_at', NEW.booked_at)"),
    _trigger("spool_added", "INSERT", "spools", "'stock.spool'", _SPOOL),
    _trigger("spool_changed", "UPDATE OF used_weight, archived, node, device", "spools", "'stock.spool'", _SPOOL,
             "OLD.used_weight IS NOT NEW.used_weight OR OLD.archived IS NOT NEW.archived "
             "OR OLD.node IS NOT NEW.node OR OLD.device IS NOT NEW.device"),
    _trigger("alert_raised", "INSERT", "alerts", "'alert.raised'", _ALERT),
    _trigger("alert_resolved", "UPDATE OF resolved_at", "alerts", "'alert.resolved'", _ALERT,
             "OLD.resolved_at IS NULL AND NEW.resolved_at IS NOT NULL"),
    _trigger("render_job_created", "INSERT", "render_jobs", "'render_job.' || NEW.state", _RENDER),
    _trigger("render_job_state", "UPDATE OF state", "render_jobs", "'render_job.' || NEW.state", _RENDER,
             "OLD.state IS NOT NEW.state"),
])
