"""The example's views. Each JSON answer says which interface served it (``wsgi`` or ``asgi``),
the worker's pid and the settings module Django loaded.

- ``index``: a plain (sync) view. Under ASGI, Django runs it in a thread, off the event loop.
- ``async_status``: a coroutine view. Under ASGI it runs on the worker's event loop; under WSGI
  Django runs it to completion in an event loop of its own for the request.
- ``echo``: a POST view reading the request body (JSON, a form, or anything else).
- ``countdown``: a streamed response, sent as it is produced (chunked).
- ``not_found``: the 404 handler (``handler404`` in urls.py).
"""

import asyncio
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    JsonResponse,
    StreamingHttpResponse,
)
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST


def interface(request: HttpRequest) -> str:
    return "asgi" if isinstance(request, ASGIRequest) else "wsgi"


def about(request: HttpRequest, view: str) -> dict[str, Any]:
    return {
        "view": view,
        "interface": interface(request),
        "worker_pid": os.getpid(),
        "settings_module": settings.SETTINGS_MODULE,
    }


@require_GET
def index(request: HttpRequest) -> JsonResponse:
    return JsonResponse({**about(request, "index"), "query": request.GET.dict()})


async def async_status(request: HttpRequest) -> HttpResponse:
    # Checked here rather than with @require_GET, whose async support is Django 5.0's.
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    started = time.perf_counter()
    await asyncio.sleep(0.01)  # where a real view awaits an HTTP client or an async database driver
    waited = time.perf_counter() - started
    return JsonResponse({**about(request, "async_status"), "waited_ms": round(waited * 1000, 1)})


# Exempt from CSRF checks: CSRF protects sites that authenticate browsers by cookies, and this
# endpoint reads no cookie or session: it is an API for scripts (curl, the tests), which could not
# send the token a form rendered by this site would carry. A view behind a login must keep the check.
@csrf_exempt
@require_POST
def echo(request: HttpRequest) -> JsonResponse:
    body = request.body  # the whole body, read once (DATA_UPLOAD_MAX_MEMORY_SIZE limits it)
    answer: dict[str, Any] = {
        **about(request, "echo"),
        "content_type": request.content_type,
        "length": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    if request.content_type == "application/json":
        try:
            answer["json"] = json.loads(body)
        except ValueError:
            return JsonResponse({"error": "the body is not valid JSON"}, status=400)
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        answer["form"] = {name: request.POST.getlist(name) for name in request.POST}
    return JsonResponse(answer)


def count_down(start: int) -> Iterator[str]:
    for n in range(start, 0, -1):
        yield f"{n}\n"
        time.sleep(0.05)
    yield "liftoff\n"


async def count_down_async(start: int) -> AsyncIterator[str]:
    for n in range(start, 0, -1):
        yield f"{n}\n"
        await asyncio.sleep(0.05)
    yield "liftoff\n"


@require_GET
def countdown(request: HttpRequest) -> HttpResponse:
    """Lines sent one at a time. Django wants an iterator of the server's kind: a plain generator
    under WSGI, an async one under ASGI (given the other kind, it buffers it and warns)."""
    try:
        start = int(request.GET.get("start", "3"))
    except ValueError:
        start = -1
    if not 0 <= start <= 100:
        return JsonResponse({"error": "start must be between 0 and 100"}, status=400)
    lines = count_down_async(start) if interface(request) == "asgi" else count_down(start)
    return StreamingHttpResponse(lines, content_type="text/plain")


def not_found(request: HttpRequest, exception: Exception) -> JsonResponse:
    return JsonResponse({"error": "not found", "path": request.path}, status=404)
