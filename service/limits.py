"""A request body limit enforced while the body streams in, before anything is parsed.

FastAPI reads a multipart upload to the end (into a temporary file) before the route runs, so a
limit checked in the route would come after a huge body was already written to disk. This ASGI
middleware answers 413 as soon as the declared length, or the bytes received so far, pass the
limit.
"""

from __future__ import annotations

import contextlib
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLargeError(Exception):
    pass


class BodySizeLimit:
    def __init__(self, app: ASGIApp, limit_bytes: int) -> None:
        self.app, self.limit = app, limit_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        received, exceeded, answered = 0, False, False

        async def counted_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    exceeded = True
                    raise BodyTooLargeError
            return message

        async def checked_send(message: Message) -> None:
            """Once the limit was passed, whatever the app answers (FastAPI turns the error
            raised while it parsed the body into a 400) becomes the 413."""
            nonlocal answered
            if not exceeded:
                answered = answered or message["type"] == "http.response.start"
                await send(message)
            elif message["type"] == "http.response.start" and not answered:
                answered = True
                await self._refuse(send)

        with contextlib.suppress(BodyTooLargeError):  # answered below, or by checked_send
            await self.app(scope, counted_receive, checked_send)
        if exceeded and not answered:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        megabytes = self.limit // (1024 * 1024)
        body = json.dumps(
            {
                "detail": f"The request body exceeds {megabytes} MB (ECHOCXR_MAX_UPLOAD_MB); "
                "send one study per upload, or raise the limit."
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
