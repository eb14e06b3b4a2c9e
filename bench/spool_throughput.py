"""How many events per second the agent's spool stores, and stores-and-sends through a real broker.

    python -m bench.spool_throughput [--events 20000] [--mqtt mqtt://127.0.0.1:1883] [--window 1 16 64 256]
    python -m bench.spool_throughput --quick    # 2,000 events, windows 1 and 64

"append" is the cost a driver pays per event (one committed INSERT);
"append+send" runs the sender against the broker and stops the clock when
the last row is confirmed and deleted; the benchmark's own session hears the
events and confirms each as it arrives, standing in for the hub (which
confirms a high-water mark a few times a second).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path

from agent.event_outbox import EventOutbox
from protocol import codec
from protocol.messages import JobProgress
from protocol.mqtt import MqttSession


def _event(n: int) -> JobProgress:
    return JobProgress(device="bench", job_id="bench-job", progress=(n % 1000) / 1000, lines_done=n)


def bench_append(dir: Path, events: int) -> float:
    spool = EventOutbox(dir / "append.db", "bench", max_messages=events + 1)
    t0 = time.perf_counter()
    for n in range(events):
        spool.append("farmhand/v1/node/bench/event", _event(n))
    elapsed = time.perf_counter() - t0
    spool.close()
    return events / elapsed


async def bench_send(dir: Path, url: str, events: int, window: int) -> float:
    spool = EventOutbox(dir / f"send-{window}.db", "bench", max_messages=events + 1, window=window)

    topic = f"farmhand/v1/node/bench-{uuid.uuid4().hex[:8]}/event"

    async def confirm(topic: str, payload: bytes, qos: int) -> None:
        spool.confirm(codec.decode(payload).seq or 0)

    async def connected() -> None:
        spool.reconnected()

    session = MqttSession(url, f"bench-{uuid.uuid4().hex[:8]}", on_message=confirm, on_connect=connected,
                          subscriptions=[(topic, 1)], persistent=False)
    session.start()
    await session.wait_connected(10)
    spool.start_sender(session)
    t0 = time.perf_counter()
    for n in range(events):
        spool.append(topic, _event(n))
        if n % 256 == 0:
            await asyncio.sleep(0)  # a driver yields between lines; let the sender run
    while spool.pending():
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - t0
    await spool.stop_sender()
    await session.stop()
    spool.close()
    return events / elapsed


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=None, help="events per measurement (20,000; 2,000 with --quick)")
    p.add_argument("--mqtt", default="mqtt://127.0.0.1:1883")
    p.add_argument("--window", type=int, nargs="+", default=None,
                   help="unconfirmed messages the sender keeps in flight (1 16 64 256; 1 64 with --quick)")
    p.add_argument("--quick", action="store_true", help="fewer events and windows: a few seconds")
    args = p.parse_args()
    events = args.events or (2000 if args.quick else 20_000)
    windows = args.window or ([1, 64] if args.quick else [1, 16, 64, 256])
    with tempfile.TemporaryDirectory(prefix="farmhand-bench-") as tmp:
        result = {"events": events, "append_per_s": round(bench_append(Path(tmp), events))}
        print(f"append: {result['append_per_s']} events/s", flush=True)
        for window in windows:
            rate = await bench_send(Path(tmp), args.mqtt, events, window)
            result[f"append_send_per_s_window_{window}"] = round(rate)
            print(f"append+send, window {window}: {rate:.0f} events/s", flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
