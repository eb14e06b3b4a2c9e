"""The hub ingest benchmark's upload client, a process of its own so that its work is not on the hub's loop.

    python -m bench.upload_client URL TOKEN FILE

POSTs FILE to URL with the API token and prints the seconds the request took
(not the interpreter's start). Exits non-zero with the hub's answer when refused.
"""

from __future__ import annotations

import http.client
import os
import sys
import time
import urllib.parse


def post_file(url: str, token: str, path: str) -> float:
    where = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=300, blocksize=1 << 20)
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(os.path.getsize(path)),
               "Authorization": f"Bearer {token}"}
    with open(path, "rb") as body:
        started = time.perf_counter()
        conn.request("POST", f"{where.path}?{where.query}", body=body, headers=headers)
        response = conn.getresponse()
        answer = response.read()
        elapsed = time.perf_counter() - started
    conn.close()
    if response.status >= 300:
        raise SystemExit(f"the hub refused the upload: {response.status} {answer[:500]!r}")
    return elapsed


if __name__ == "__main__":
    print(post_file(*sys.argv[1:4]))
