"""How fast the hub takes in events and uploads, and how long an upload holds up its event loop.

    python -m bench.hub_ingest            # 3000 events, a 100 MiB upload
    python -m bench.hub_ingest --quick    # 500 events, a 10 MiB upload

Events: numbered JobProgress envelopes for one printing job go through
``Ingest.handle`` — decode, de-duplicate on (sender, seq), apply, group commit
with synchronous=FULL — as the MQTT session would deliver them (up to 1,000 in
flight), without a broker. ``bench.fleet`` measures the whole farm through Mosquitto.
Upload: a client process (``bench.upload_client``) POSTs a G-code file to a running hub while a ticker measures the
longest the event loop was held (what MQTT ingest would wait).
The last line printed is one JSON object with the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from hub.access.accounts import Role
from hub.app import Hub
from hub.config import HubConfig, JobsConfig
from hub.jobs.reconcile import Reconciler
from hub.jobs.tracker import JobEvent, PrintJobTracker
from hub.mqtt import CommandOutbox, Ingest, MqttLink
from hub.mqtt import EventConfirmations, RebirthRequests
from hub.store import Store, utcnow
from protocol import codec, topics
from protocol.logs import configure
from protocol.messages import CommandAck, JobProgress


async def events_per_second(data_dir: Path, count: int) -> float:
    store = Store(data_dir)
    link = MqttLink()
    outbox = CommandOutbox(store, "bench", link)
    store.db.execute("INSERT INTO files VALUES (?, 'part.gcode', 1, ?)", ("a" * 64, utcnow()))
    store.db.execute("INSERT INTO jobs (name, file_sha256, state, node, device, created_at)"
                     " VALUES ('part', ?, 'printing', 'pi-1', 'mk3s-1', ?)", ("a" * 64, utcnow()))
    ingest = Ingest(store, outbox, EventConfirmations("bench", link))
    ingest.subscribe(JobEvent | CommandAck, PrintJobTracker(outbox).apply)
    ingest.watch_seq(Reconciler(store, outbox, JobsConfig(), RebirthRequests("bench", link)))
    payloads = [codec.encode(codec.make("pi-1", JobProgress(device="mk3s-1", job_id="1", progress=n / count,
                                                            lines_done=n), seq=n + 1)) for n in range(count)]
    topic = topics.node_event("pi-1")
    started = time.perf_counter()
    # As the broker delivers them: up to its in-flight limit (the shipped 1,000) awaiting PUBACK at once,
    # so the group commit has batches to make.
    for first in range(0, count, 1000):
        await asyncio.gather(*(ingest.handle(topic, p, 1) for p in payloads[first:first + 1000]))
    elapsed = time.perf_counter() - started
    assert ingest.counts["events"] == count, ingest.counts
    store.close()
    return count / elapsed


async def upload(data_dir: Path, mib: int) -> dict[str, float]:
    path = data_dir / "big.gcode"
    line = b"G1 X10.123 Y20.456 E0.0123 F1800 ; move\n"
    path.write_bytes(line * (mib * 1024 * 1024 // len(line)))
    hub = Hub(HubConfig.model_validate({"hub_id": "bench", "data_dir": data_dir / "hub", "http": {"port": 0},
                                        "mqtt": {"embedded_port": 0},
                                        "auth": {"admin_password": "bench-password-1"}}))
    await hub.start()
    _, token = hub.surface.accounts.create_token("bench", Role.OPERATOR, "bench")
    worst = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        while not done.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            worst = max(worst, time.perf_counter() - t - 0.005)

    tick = asyncio.create_task(ticker())
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.upload_client", f"{hub.http_url}/api/v1/files?name=big.gcode", token, str(path),
        stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent)
    out, _ = await proc.communicate()
    done.set()
    await tick
    await hub.stop()
    if proc.returncode != 0:
        raise RuntimeError("the upload failed")
    elapsed = float(out)
    return {"upload_mib_per_s": round(path.stat().st_size / 2**20 / elapsed, 1),
            "upload_worst_loop_stall_ms": round(worst * 1000, 1)}


async def main(quick: bool) -> dict[str, float]:
    events, mib = (500, 10) if quick else (3000, 100)
    with tempfile.TemporaryDirectory(prefix="farmhand-bench-") as tmp:
        rate = await events_per_second(Path(tmp) / "events", events)
        print(f"events: {rate:.0f} per second ({events} job progress envelopes, each committed)", flush=True)
        result: dict[str, float] = {"events_per_s": round(rate)}
        result.update(await upload(Path(tmp), mib))
        print(f"upload of {mib} MiB: {result['upload_mib_per_s']} MiB/s, the event loop held at most "
              f"{result['upload_worst_loop_stall_ms']} ms", flush=True)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer events and a smaller upload")
    args = parser.parse_args()
    configure("warning")
    print(json.dumps(asyncio.run(main(args.quick))))
