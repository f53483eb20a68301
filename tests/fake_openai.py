"""A small OpenAI-compatible chat-completions server for tests, on a real local port.

It answers `/v1/chat/completions` the way OpenAI (and Ollama, vLLM, llama.cpp) do: the same success
and error bodies, `retry-after-ms` on a 429, a 400 for a request without `model` or `messages`, a
401 for a missing key. What it answers next is scripted by the test (`plays`), and every request
body it received is kept for assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


@dataclass(frozen=True)
class Play:
    """One scripted answer: a completion whose message is `content`, an HTTP error, or a slow answer."""

    content: str | None = None
    status: int = 200
    delay: float = 0.0
    retry_after_ms: int | None = None


def completion(payload: dict[str, Any]) -> Play:
    return Play(content=json.dumps(payload, ensure_ascii=False))


_ERRORS = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def _error_body(status: int, message: str | None = None) -> dict[str, Any]:
    kind, code, default = _ERRORS.get(status, ("server_error", None, "Error."))
    return {"error": {"message": message or default, "type": kind, "param": None, "code": code}}


@dataclass
class FakeOpenAI:
    """The server's state: the script it plays and the requests it saw."""

    plays: list[Play] = field(default_factory=list)
    #: What to answer once the script is played out (default: a 500).
    default: Play = field(default_factory=lambda: Play(status=500))
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    base_url: str = ""

    def app(self) -> FastAPI:
        application = FastAPI()

        @application.post("/v1/chat/completions")
        async def chat_completions(request: Request) -> JSONResponse:
            self.headers.append(dict(request.headers))
            if not request.headers.get("authorization", "").startswith("Bearer "):
                return JSONResponse(_error_body(401, "You didn't provide an API key."), status_code=401)
            try:
                body = await request.json()
            except ValueError:
                return JSONResponse(
                    _error_body(400, "We could not parse the JSON body of your request."), 400
                )
            self.requests.append(body)
            if not body.get("model") or not isinstance(body.get("messages"), list):
                return JSONResponse(_error_body(400, "you must provide a model parameter"), status_code=400)
            play = self.plays.pop(0) if self.plays else self.default
            if play.delay:
                await asyncio.sleep(play.delay)
            if play.status != 200:
                headers = (
                    {"retry-after-ms": str(play.retry_after_ms)} if play.retry_after_ms is not None else {}
                )
                return JSONResponse(_error_body(play.status), status_code=play.status, headers=headers)
            prompt_tokens = sum(len(str(message.get("content", ""))) // 4 for message in body["messages"])
            completion_tokens = len(play.content or "") // 4
            return JSONResponse(
                {
                    "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body["model"],
                    "system_fingerprint": "fp_fake",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": play.content, "refusal": None},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                }
            )

        return application


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def running_fake_openai() -> AsyncIterator[FakeOpenAI]:
    """Serve a FakeOpenAI on 127.0.0.1 for the duration of the block; `base_url` ends in /v1."""
    fake = FakeOpenAI()
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(fake.app(), host="127.0.0.1", port=port, log_level="error", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    fake.base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield fake
    finally:
        server.should_exit = True
        await serving
