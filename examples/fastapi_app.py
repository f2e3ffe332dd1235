"""A FastAPI application served by pronghorn as ASGI.

From the repository root (``pip install 'pronghorn[websockets]' fastapi``)::

    pronghorn --chdir examples fastapi_app:app -w 2

pronghorn sees an async app and serves it as ASGI (``-k asgi`` says so explicitly). Then::

    curl http://127.0.0.1:8000/
    curl -X POST http://127.0.0.1:8000/items -H 'Content-Type: application/json' -d '{"name": "hat", "price": 12.5}'
    curl http://127.0.0.1:8000/items/1
    curl -N http://127.0.0.1:8000/countdown?start=5
    python -m websockets ws://127.0.0.1:8000/ws

What it shows:

- the lifespan: each worker runs ``lifespan()`` once before it accepts connections. What it yields
  becomes the lifespan state, which every request reads as ``request.state`` (or
  ``websocket.state``); the code after ``yield`` runs when the worker stops (TERM, HUP, a
  ``max_requests`` restart). Here the state is a stand-in for a database pool: an in-memory store
  of the worker's own, so with ``-w 2`` each worker has its own items.
- a JSON route reading the state, a POST route validating its body with pydantic, a streamed
  response (sent as it is produced, chunked), and a WebSocket echo.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

from fastapi import FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field


class Item(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    price: float = Field(ge=0)
    tags: list[str] = []


class StoredItem(Item):
    id: int


class Store:
    """An in-memory stand-in for a database: opened at startup, closed at shutdown."""

    def __init__(self) -> None:
        self.items: dict[int, StoredItem] = {}
        self.next_id = 1
        self.open = True

    def add(self, item: Item) -> StoredItem:
        stored = StoredItem(id=self.next_id, **item.model_dump())
        self.items[stored.id] = stored
        self.next_id += 1
        return stored

    async def close(self) -> None:
        self.open = False
        self.items.clear()


class State(TypedDict):
    store: Store
    worker_pid: int


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    store = Store()  # e.g. `await asyncpg.create_pool(...)`
    yield {"store": store, "worker_pid": os.getpid()}
    await store.close()


app = FastAPI(title="pronghorn FastAPI example", lifespan=lifespan)


@app.get("/")
async def index(request: Request) -> dict[str, object]:
    store: Store = request.state.store
    return {"worker_pid": request.state.worker_pid, "items": len(store.items), "store_open": store.open}


@app.post("/items", status_code=201)
async def create_item(item: Item, request: Request) -> StoredItem:
    store: Store = request.state.store
    return store.add(item)


@app.get("/items/{item_id}")
async def read_item(item_id: int, request: Request) -> StoredItem:
    store: Store = request.state.store
    item = store.items.get(item_id)
    if item is None:
        raise HTTPException(status_code=404, detail="no such item")
    return item


@app.get("/countdown")
async def countdown(start: int = 3) -> StreamingResponse:
    """Lines sent one by one as they are produced (Transfer-Encoding: chunked)."""

    async def lines() -> AsyncIterator[str]:
        for n in range(start, 0, -1):
            yield f"{n}\n"
            await asyncio.sleep(0.05)
        yield "liftoff\n"

    return StreamingResponse(lines(), media_type="text/plain")


@app.websocket("/ws")
async def echo(websocket: WebSocket) -> None:
    """Echoes every message back: text as text, bytes as bytes."""
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            else:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        pass
