"""Who may read the dashboard.

Bound to localhost (the default) the page needs no token: whoever can reach 127.0.0.1 on the Pi can already read
the status file. It still checks the Host header there, so a web page elsewhere cannot reach it through a DNS
name that resolves to 127.0.0.1 (DNS rebinding). Bound to any other address it needs the configured token
(gateway.config refuses to start without one), given as `Authorization: Bearer TOKEN`, as the cookie the page
sets, or once as `/?token=TOKEN` (answered with the cookie and a redirect, so the token leaves the address bar).
Tokens are compared with hmac.compare_digest: the time of a refusal tells nothing about how much of it matched.
"""

import hmac
import http.cookies

COOKIE = "soil_dashboard"
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")


def _host_name(host_header):
    host = (host_header or "").strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """Decides each request from its headers and query; `check` returns None (allowed) or (status, reason)."""

    def __init__(self, token=None, local=True):
        self.local = local
        self._token = token.encode("utf-8") if token else None

    def matches(self, offered):
        if self._token is None or offered is None:
            return False
        return hmac.compare_digest(offered.encode("utf-8", "replace"), self._token)

    def offered(self, headers):
        """The token a request carries in its Authorization header or its cookie (None when it carries none)."""
        auth = headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[7:].strip()
        cookie = headers.get("Cookie")
        if cookie:
            jar = http.cookies.SimpleCookie()
            try:
                jar.load(cookie)
            except http.cookies.CookieError:
                return None
            if COOKIE in jar:
                return jar[COOKIE].value
        return None

    def check(self, headers):
        if self.local:
            if self._token is None:
                if _host_name(headers.get("Host")) not in _LOCAL_HOSTS:
                    return 403, "this dashboard answers only to localhost (Host header %r)" % headers.get("Host")
                return None
        if not self.matches(self.offered(headers)):
            return 401, "a token is needed: open /?token=... once, or send Authorization: Bearer ..."
        return None

    def cookie_header(self):
        return "%s=%s; HttpOnly; SameSite=Strict; Path=/" % (COOKIE, self._token.decode("utf-8"))
