"""Rendered frames on their way to the hub: one multipart POST per frame, retried until it lands.

A frame is reported rendered only once the hub has it, so an upload is
retried (exponential backoff with jitter) through what a restarting hub or a
flaky link looks like: refused connections, dropped connections, timeouts and
5xx answers. Any other answer (401, 413…) will not change on a retry and
fails at once. When the retries run out the caller gets ``UploadFailed``
with the last reason, and fails the task with it: a frame is never dropped
without someone being told.
"""

from __future__ import annotations

import asyncio
import mimetypes
import ssl
from dataclasses import dataclass
from pathlib import Path

import structlog

from agent.net import HttpClient, InvalidUrl, Multipart, RequestFailed, Timeout

from protocol.mqtt import backoff_delay

log = structlog.get_logger("farmhand.render.upload")

# 408 and 429 are the server asking for a later retry; 5xx is the server failing, not the frame.
_RETRY_STATUSES = frozenset({408, 429})


class UploadFailed(Exception):
    """A frame did not reach the hub; the text says which, where to and why."""


@dataclass(frozen=True, slots=True)
class Retry:
    """How long an upload keeps trying: up to ``attempts`` tries, ~1+2+4+…s apart, at most ``cap_s``."""

    attempts: int = 8
    initial_s: float = 1.0
    cap_s: float = 30.0


class _Retryable(Exception):
    """One attempt failed in a way a later attempt may not."""


class FrameUploader:
    """Uploads frames over one HTTP connection pool; ``close()`` when done."""

    def __init__(
        self,
        *,
        token: str | None = None,
        retry: Retry = Retry(),
        timeout: Timeout = Timeout(total=None, connect=10, read=120),
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if retry.attempts < 1:
            raise ValueError("retry.attempts must be at least 1")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.retry = retry
        self._timeout = timeout
        self._tls = tls
        self._http: HttpClient | None = None
        self.retries = 0

    async def upload(self, url: str, *, task_id: str, frame: int, path: Path, sha256: str) -> None:
        """POST ``path`` as multipart (``task_id``, ``frame``, ``sha256``, ``file``); raises UploadFailed."""
        what = f"upload of {path.name} (frame {frame}) to {url}"
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._post(url, task_id, frame, path, sha256)
            except _Retryable as exc:
                if attempt >= self.retry.attempts:
                    raise UploadFailed(f"{what} failed after {attempt} attempts: {exc}") from None
                delay = backoff_delay(attempt - 1, self.retry.initial_s, self.retry.cap_s)
                self.retries += 1
                log.warning("upload_retry", url=url, task_id=task_id, frame=frame, attempt=attempt,
                            error=str(exc), retry_in_s=round(delay, 2))
                await asyncio.sleep(delay)
            except UploadFailed as exc:
                raise UploadFailed(f"{what} failed: {exc}") from None
            else:
                log.info("frame_uploaded", url=url, task_id=task_id, frame=frame, attempts=attempt)
                return

    async def _post(self, url: str, task_id: str, frame: int, path: Path, sha256: str) -> None:
        if self._http is None:
            self._http = HttpClient(tls=self._tls, timeout=self._timeout)
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        # The form reads the file anew on each attempt.
        form = (Multipart().field("task_id", task_id).field("frame", str(frame)).field("sha256", sha256)
                .file("file", path, content_type=content_type))
        try:
            async with self._http.post(url, body=form, headers=self._headers) as resp:
                if resp.status < 300:
                    await resp.read()
                    return
                said = (await resp.text(errors="replace")).strip()[:200]
                error = f"HTTP {resp.status} {resp.reason or ''}".rstrip() + (f": {said}" if said else "")
                if resp.status >= 500 or resp.status in _RETRY_STATUSES:
                    raise _Retryable(error)
                raise UploadFailed(error)
        except InvalidUrl:
            raise UploadFailed("not a valid URL") from None
        except (RequestFailed, TimeoutError) as exc:  # refused, dropped or timed out: a later attempt may land
            raise _Retryable(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
        except OSError as exc:
            # The frame's own file: no retry brings it back.
            raise UploadFailed(f"cannot read {path}: {exc.strerror or exc}") from None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
