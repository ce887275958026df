"""HTTP to an OpenAI-compatible server: one pooled client, retries, one-line errors.

- Retries with exponential backoff and jitter on 429, 5xx, timeouts and dropped or
  refused connections, honouring `Retry-After`; `max_retries` bounds them.
- Errors are one line naming the URL and the model: connection refused, unknown model
  (404), auth failure (401/403), a server's refusal (400, its message kept short).
- The API key lives only in the client's headers; any text a server sends back has it
  masked before it reaches a message (some servers echo the key they were given).
"""
from __future__ import annotations

import email.utils
import json
import random
import time
from typing import Any, Callable

import httpx

from bench.errors import BenchError

MASK = "[REDACTED]"
_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
_MAX_WAIT_S = 60.0


class ServerError(BenchError):
    """A request the server refused or that failed after its retries."""

    def __init__(self, message: str, status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status, self.detail = status, detail


class Client:
    def __init__(self, base_url: str, model: str, key: str | None, timeout_s: float, max_retries: int,
                 max_connections: int, backoff_s: float = 0.5, key_env: str | None = None) -> None:
        self.base_url, self.model, self._key, self.key_env = base_url, model, key, key_env
        self.max_retries, self.backoff_s = max_retries, backoff_s
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self.http = httpx.Client(base_url=base_url + "/", headers=headers, timeout=timeout_s, limits=limits)
        self.retries = 0  # retried requests, for the cell's notes

    def close(self) -> None:
        self.http.close()

    # -- requests -------------------------------------------------------------------
    def get(self, path: str, retries: int | None = None) -> Any:
        return self._call("GET", path, None, retries, lambda r: r.json())

    def post(self, path: str, payload: dict, retries: int | None = None) -> Any:
        return self._call("POST", path, payload, retries, lambda r: r.json())

    def stream(self, path: str, payload: dict, on_event: Callable[[dict], None]) -> None:
        """POST with `stream: true`; `on_event` gets each server-sent JSON event. A stream
        cut off mid-way is retried whole (the caller's `on_event` must reset on `{}`)."""
        def consume(response: httpx.Response) -> None:
            for line in response.iter_lines():
                line = line.strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                on_event(json.loads(data))

        def attempt() -> None:
            on_event({})  # a fresh attempt: forget a half-read stream
        self._call("POST", path, payload, None, consume, stream=True, before=attempt)

    def _call(self, method: str, path: str, payload: dict | None, retries: int | None,
              read: Callable[[httpx.Response], Any], stream: bool = False,
              before: Callable[[], None] | None = None) -> Any:
        retries = self.max_retries if retries is None else retries
        for attempt in range(retries + 1):
            wait: float | None = None
            if before:
                before()
            try:
                if stream:
                    with self.http.stream(method, path, json=payload) as response:
                        if response.status_code < 400:
                            return read(response)
                        response.read()
                        reason, wait = self._status(response, path)
                else:
                    response = self.http.request(method, path, json=payload)
                    if response.status_code < 400:
                        return read(response)
                    reason, wait = self._status(response, path)
            except httpx.TimeoutException:
                reason = f"no answer within {self.http.timeout.read}s (timeout_s)"
            except httpx.ConnectError:
                reason = "connection refused; is the server running, and is base_url right?"
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
                reason = "the connection was dropped mid-request"
            except json.JSONDecodeError:
                reason = "the server sent a response that is not JSON"
            if attempt == retries:
                tries = f" (after {retries + 1} attempts)" if retries else ""
                raise ServerError(self._where(path) + reason + tries)
            self.retries += 1
            time.sleep(wait if wait is not None else self._backoff(attempt))
        raise AssertionError("unreachable")

    def _status(self, response: httpx.Response, path: str) -> tuple[str, float | None]:
        """(reason, wait) for a retryable status; raises for the others."""
        status, detail = response.status_code, self._detail(response)
        if status in _RETRY_STATUS:
            return f"HTTP {status} {detail}".strip(), _retry_after(response.headers.get("retry-after"))
        where = self._where(path)
        if status in (401, 403):
            hint = (f"check the key in the environment variable {self.key_env} (api_key_env)" if self.key_env
                    else "the server wants a key: name its environment variable with api_key_env")
            raise ServerError(where + f"authentication failed (HTTP {status}); {hint}", status, detail)
        if status == 404:
            raise ServerError(where + f"not found (HTTP 404: {detail or 'no message'}); check the model name and "
                              "that base_url ends with /v1", status, detail)
        raise ServerError(where + f"the server refused the request (HTTP {status}: {detail or 'no message'})",
                          status, detail)

    def _detail(self, response: httpx.Response) -> str:
        try:
            body = response.json()
            err = body.get("error", body) if isinstance(body, dict) else body
            text = err.get("message", err) if isinstance(err, dict) else err
            text = str(text if not isinstance(text, (dict, list)) else json.dumps(text))
        except (ValueError, AttributeError):
            text = response.text
        text = " ".join(text.split())
        if self._key:
            text = text.replace(self._key, MASK)
        return text[:200] + ("..." if len(text) > 200 else "")

    def _where(self, path: str) -> str:
        return f"{self.base_url}/{path} (model {self.model!r}): "

    def _backoff(self, attempt: int) -> float:
        return min(_MAX_WAIT_S, self.backoff_s * 2 ** attempt) * (0.5 + random.random())


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), capped."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, min(_MAX_WAIT_S, seconds))
