"""The server under the gateway's HTTP endpoints (the dashboard, /metrics): the standard library's
ThreadingHTTPServer, served from a daemon thread of the gateway process.

One thing it adds: a client that goes away in the middle of an answer (a browser tab closed, a page reloaded, a
scraper's timeout) makes the handler's write fail with a reset connection. That is the client's doing, not the
gateway's: it gets a debug line, where socketserver's default printed a traceback into the service's log. Any other
failure of a handler is a bug and is logged with its traceback, at ERROR, through logging.
"""

import sys
import threading
from http.server import ThreadingHTTPServer

CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


class EndpointServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handler, name, logger):
        super().__init__(address, handler)
        self.name = name
        self.logger = logger
        self._thread = None

    def url(self, path="/"):
        host, port = self.server_address[:2]
        return "http://%s:%d%s" % ("[%s]" % host if ":" in host else host, port, path)

    def start(self):
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.5}, name=self.name,
                                        daemon=True)
        self._thread.start()

    def stop(self):
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, CLIENT_GONE):
            self.logger.debug("%s: the client %s went away (%s)", self.name, client_address[0], exc)
        else:
            self.logger.error("%s: a request from %s failed", self.name, client_address[0], exc_info=True)
