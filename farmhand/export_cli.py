"""`farmhand export` (the outbound events' schema, the PostgreSQL reference consumer) and `farmhand backup`.

Backup commands work on the hub's data directory named by its config file, so they run beside a live hub
(create, list, verify) or instead of it (restore, which refuses a running hub).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

EXAMPLES = {
    "export schema": "example: farmhand export schema > farmhand-events.schema.json",
    "export postgres": "example: farmhand export postgres --from-stream farmhand:events "
                       "--dsn postgresql://farm@db/erp --group erp-sync",
    "backup create": "example: farmhand backup create --config /etc/farmhand/hub.toml",
    "backup list": "example: farmhand backup list --config /etc/farmhand/hub.toml",
    "backup verify": "example: farmhand backup verify 20261206T020000Z-a1b2c3 --config /etc/farmhand/hub.toml",
    "backup restore": "example: systemctl stop farmhand-hub && farmhand backup restore 20261206T020000Z-a1b2c3 "
                      "--config /etc/farmhand/hub.toml",
}

Add = Callable[..., argparse.ArgumentParser]


def add_commands(add_parser: Add) -> None:
    def add(name: str, helptext: str, *parent: object) -> argparse.ArgumentParser:
        p = add_parser(name, helptext, *parent)
        p.epilog = EXAMPLES.get(f"{parent[1]} {name}" if parent else name, p.epilog)
        return p

    export = add("export", "The farm's events for other systems: their schema and a PostgreSQL consumer.")
    export_sub = export.add_subparsers(dest="export_command", required=True, metavar="WHAT")
    add("schema", "Print the JSON Schema of every outbound event.", export_sub, "export")
    pg = add("postgres", "Keep jobs, orders and stock in PostgreSQL in step with the hub's Redis stream.",
             export_sub, "export")
    pg.add_argument("--from-stream", required=True, metavar="KEY", help="the stream ([export.redis] stream)")
    pg.add_argument("--redis", default=os.environ.get("FARMHAND_REDIS_URL", "redis://127.0.0.1:6379/0"),
                    help="Redis URL (env FARMHAND_REDIS_URL; default redis://127.0.0.1:6379/0)")
    pg.add_argument("--dsn", default=os.environ.get("FARMHAND_PG_DSN"), required="FARMHAND_PG_DSN" not in os.environ,
                    help="PostgreSQL connection string (env FARMHAND_PG_DSN)")
    pg.add_argument("--schema", default="farmhand", help="PostgreSQL schema of the tables (default farmhand)")
    pg.add_argument("--group", default="farmhand-postgres", help="consumer group (default farmhand-postgres)")
    pg.add_argument("--consumer", default=os.uname().nodename, help="this consumer's name in the group")
    pg.add_argument("--until-idle", action="store_true", help="stop when the stream has nothing new")

    backup = add("backup", "Back up and restore the hub's database and file store.")
    backup_sub = backup.add_subparsers(dest="backup_command", required=True, metavar="ACTION")
    actions = {"create": "Back up now (safe while the hub runs).", "list": "List the backups.",
               "verify": "Re-hash a backup's parts and check its database.",
               "restore": "Restore a backup into the (stopped) hub's data directory, or --to a fresh one."}
    for name, helptext in actions.items():
        p = add(name, helptext, backup_sub, "backup")
        p.add_argument("--config", type=Path, default=None, help="hub TOML file (env FARMHAND_HUB__… overrides)")
        if name in ("verify", "restore"):
            p.add_argument("id", help="the backup's id (farmhand backup list)")
        if name == "restore":
            p.add_argument("--to", type=Path, default=None, help="restore here instead of the hub's data_dir")
            p.add_argument("--hub-id", default=None, help="accept a backup of this hub id (default: the config's)")
    backup_sub.choices["list"].add_argument("--json", action="store_true", help="print JSON")


def run_export(args: argparse.Namespace) -> int:
    if args.export_command == "schema":
        from hub.export.schemas import json_schema

        print(json.dumps(json_schema(), indent=2))
        return 0
    from hub.export.postgres_sink import PostgresSink
    from hub.export.stream_consumer import StreamConsumer

    async def consume() -> None:
        consumer = StreamConsumer(args.redis, args.from_stream, args.group, args.consumer)
        try:
            await PostgresSink(consumer, args.dsn, args.schema).run(until_idle=args.until_idle)
        finally:
            await consumer.close()

    asyncio.run(consume())
    return 0


def run_backup(args: argparse.Namespace) -> int:
    from hub.backup.archive import BackupArchive, BackupError
    from hub.backup.restore import restore, verify
    from hub.backup.service import backup_dir, describe
    from hub.config import HubConfig
    from hub.store import DB_NAME
    from protocol.config import load

    config = load(HubConfig, args.config, "FARMHAND_HUB")
    archive = BackupArchive(backup_dir(config.backup, config.data_dir), config.backup.compress_level)
    try:
        match args.backup_command:
            case "create":
                manifest = archive.create(config.data_dir / DB_NAME, config.data_dir / "files", config.hub_id)
                print(f"{manifest.id}: database and {len(manifest.files)} files, {manifest.new_objects} new objects "
                      f"({manifest.stored_bytes} bytes) in {archive.root}")
            case "list":
                infos = [describe(archive, archive.load(i)) for i in archive.ids()]
                if args.json:
                    print(json.dumps([i.model_dump() for i in infos], indent=1))
                for info in [] if args.json else infos:
                    state = {True: "verified", False: "FAILED", None: "unverified"}[info.verified]
                    print(f"{info.id}  {info.kind:9}  {info.files:5} files  {state}")
            case "verify":
                manifest = verify(archive, args.id)
                print(f"{args.id}: ok (database and {len(manifest.files)} files)")
            case "restore":
                done = restore(archive, args.id, args.to or config.data_dir, args.hub_id or config.hub_id)
                kept = f"; the previous database is kept as {done.previous_database}" if done.previous_database else ""
                print(f"{args.id} restored into {done.data_dir}: {done.files_written} files written, "
                      f"{done.files_present} already there{kept}")
    except BackupError as exc:
        print(f"farmhand backup: {exc}", file=sys.stderr)
        return 1
    return 0
