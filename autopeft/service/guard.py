"""What a request body may be before any route reads it: at most `BODY_LIMIT` bytes (413), and JSON nested at
most `MAX_JSON_DEPTH` levels (422). Python's JSON parser recurses once per level, so a body of a few kilobytes of
`[[[[...` would end in a RecursionError (a 500) inside the framework; a search request is two levels deep."""

from __future__ import annotations

import numpy as np
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BODY_LIMIT = 1 << 20  # bytes; an inline space is a few kilobytes
MAX_JSON_DEPTH = 32

_OPEN = np.zeros(256, dtype=np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


def json_depth(body: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest (brackets inside strings not counted); linear in the
    body's length, without parsing it."""
    data = np.frombuffer(body, dtype=np.uint8)
    if not data.size:
        return 0
    quotes = data == ord('"')
    backslash = data == ord("\\")
    # A quote after an odd run of backslashes is escaped: the run's length is the distance back to the last
    # character that is not a backslash.
    index = np.arange(data.size)
    last_other = np.maximum.accumulate(np.where(backslash, -1, index))
    run_before = np.concatenate(([0], index[:-1] - last_other[:-1]))
    real_quotes = quotes & (run_before % 2 == 0)
    in_string = (np.cumsum(real_quotes) % 2).astype(bool) & ~real_quotes
    steps = np.where(in_string, 0, _OPEN[data])
    return int(np.cumsum(steps, dtype=np.int64).max(initial=0))


class BodyGuard:
    """413 for a body over the limit, whether it says its length or streams; 422 for JSON nested too deep."""

    def __init__(self, app: ASGIApp, limit: int = BODY_LIMIT, max_depth: int = MAX_JSON_DEPTH) -> None:
        self.app = app
        self.limit = limit
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._answer(413, f"request body over {self.limit} bytes", scope, receive, send)
            return
        body, more = b"", True
        while more:  # the whole body, read once and handed on: routes read at most `limit` bytes
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                await self._answer(413, f"request body over {self.limit} bytes", scope, receive, send)
                return
        depth = json_depth(body)
        if depth > self.max_depth:
            await self._answer(422, f"the request body nests JSON {depth} levels deep; at most {self.max_depth}",
                               scope, receive, send)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()  # a disconnect, if the client goes
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    @staticmethod
    async def _answer(status: int, detail: str, scope: Scope, receive: Receive, send: Send) -> None:
        await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)
