"""The one request cycle every worker runs.

``pre_request`` hook → environ → the WSGI app → iterate the body into the response → ``close()`` →
access log → ``post_request`` hook. Workers bring the parsed request head, a body source and a
response sink; they never call the application themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pronghorn import SERVER_SOFTWARE
from pronghorn.apps.wsgi import BodySource, InputStream, Response, ResponseSink, build_environ
from pronghorn.http import ProtocolError, RequestHead, ResponseFramer

if TYPE_CHECKING:
    from pronghorn.workers.base import Worker

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Request:
    """The request as hooks see it (``pre_request(worker, req)``), with Gunicorn's attribute names."""

    def __init__(self, head: RequestHead, peer: Any, scheme: str) -> None:
        self.head = head
        self.method = head.method.decode("ascii")
        self.uri = head.target.decode("latin-1")
        self.path = head.path.decode("latin-1")
        self.query = head.query.decode("latin-1")
        self.fragment = head.fragment.decode("latin-1")
        self.version = head.version
        self.headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in head.headers]
        self.scheme = scheme
        self.peer_addr = peer
        self.remote_addr = peer
        self.body: InputStream | None = None

    def should_close(self) -> bool:
        return not self.head.keep_alive


class RequestCycle:
    """Runs requests through the worker's application; one instance per worker process."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.cfg = worker.cfg
        self.log = worker.log
        self.multiprocess = worker.cfg.workers > 1
        self.script_name = worker.cfg.environ.get("SCRIPT_NAME", "")
        self.server_header = SERVER_SOFTWARE.split("/")[0].encode("ascii")

    def run(
        self,
        head: RequestHead,
        body: BodySource,
        sink: ResponseSink,
        *,
        peer: tuple[str, int] | str | None,
        server: tuple[str, int] | str,
        url_scheme: str = "http",
        multithread: bool = False,
        keep_alive: bool = True,
    ) -> Response:
        """Answer one request; returns the response (``keep_alive`` says if the connection may be reused)."""
        started = time.monotonic()
        req = Request(head, peer, url_scheme)
        self.worker.call_hook("pre_request", self.worker, req)
        framer = ResponseFramer(
            request_method=head.method,
            request_version=head.version,
            keep_alive=keep_alive and head.keep_alive,
            server_header=self.server_header,
        )
        response = Response(framer, sink)
        stream = InputStream(body, self._continue_sender(head, response, sink))
        req.body = stream
        environ = build_environ(
            head,
            body=stream,
            peer=peer,
            server=server,
            url_scheme=url_scheme,
            script_name=self.script_name,
            multithread=multithread,
            multiprocess=self.multiprocess,
        )
        try:
            self._call_app(environ, response)
        except OSError as exc:  # the client went away while we were answering
            response.failed = True
            self.log.debug("Client %s disconnected: %s", peer, exc)
        except ProtocolError as exc:  # the request body turned out to be malformed
            response.failed = True
            self.log.warning("Invalid request from ip=%s: %s", environ.get("REMOTE_ADDR"), exc)
            if not response.headers_sent:
                response.send_error(exc.status, exc.reason, str(exc))
        except Exception:
            response.failed = True
            self.log.exception("Error handling request %s", environ.get("RAW_URI"))
            if not response.headers_sent:
                response.send_error(500, "Internal Server Error", "")
        finally:
            self.log.access(response, req, environ, time.monotonic() - started)
            self.worker.call_hook("post_request", self.worker, req, environ, response)
        return response

    def _call_app(self, environ: dict[str, Any], response: Response) -> None:
        assert self.worker.wsgi is not None
        result = self.worker.wsgi(environ, response.start_response)
        try:
            response.write_all(result)
            response.finish()
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    @staticmethod
    def _continue_sender(head: RequestHead, response: Response, sink: ResponseSink) -> Callable[[], None] | None:
        if not head.expect_continue:
            return None

        def send_continue() -> None:
            # RFC 9110 §10.1.1: only worth sending while the final response has not started.
            if not response.headers_sent:
                sink.write(CONTINUE)

        return send_continue
