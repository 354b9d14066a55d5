"""Delivering alerts: the log at once, then a webhook (a JSON POST) and e-mail (SMTP) from a thread of their own.

A receiver that is down or slow must not hold anything up: each message waits in a bounded queue and is tried
again with a growing pause (1 s, 2 s, 4 s ... at most 5 minutes) until it is delivered or has waited a day; the
alert itself is already stored (gateway/alerts.py) before it is handed here. Each receiver gets each message once
it answers: a webhook with any 2xx status, an SMTP server by accepting the message.

The webhook body (the same for every kind):

    {"event": "open", "alert": {"id": 12, "kind": "dry", "board": "bed-1", "probe": 0,
     "detail": "18% (alert below 20%, clears above 25%)", "opened_at": "2026-12-02T10:11:12Z"},
     "gateway": "pi-greenhouse", "sent_at": "2026-12-02T10:11:13Z"}
"""

import collections
import email.message
import json
import logging
import smtplib
import socket
import threading
import time
import urllib.error
import urllib.request

log = logging.getLogger("gateway.alerts")

QUEUE_MAX = 1000          # messages waiting per receiver; beyond it the oldest is given up (said in the log)
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 300.0
GIVE_UP_S = 86400.0
TIMEOUT_S = 10.0


class SmtpSettings:
    def __init__(self, host, to, sender, port=25, user=None, password=None, starttls=False, ssl=False):
        self.host = host
        self.port = int(port)
        self.to = list(to) if isinstance(to, (list, tuple)) else [to]
        self.sender = sender
        self.user = user
        self.password = password
        self.starttls = bool(starttls)
        self.ssl = bool(ssl)


def alert_text(event, alert):
    """One line: what the log says, and an e-mail's subject."""
    what = alert["kind"] + (" probe %s" % alert["probe"] if alert.get("probe") is not None else "")
    return "alert %s: %s %s: %s" % ("opened" if event == "open" else "cleared", alert["board"], what,
                                    alert["detail"])


class Webhook:
    """POST the message as JSON to `url` (with `Authorization: Bearer <token>` when a token is set)."""

    name = "webhook"

    def __init__(self, url, token=None, timeout=TIMEOUT_S):
        self.url = url
        self.token = token
        self.timeout = timeout

    def send(self, message):
        req = urllib.request.Request(self.url, data=json.dumps(message).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            if not 200 <= resp.status < 300:
                raise OSError("HTTP %d" % resp.status)


class Email:
    """One e-mail per message through an SMTP server."""

    name = "e-mail"

    def __init__(self, settings, timeout=TIMEOUT_S):
        self.s = settings
        self.timeout = timeout

    def send(self, message):
        msg = email.message.EmailMessage()
        msg["Subject"] = "soil: " + alert_text(message["event"], message["alert"])
        msg["From"] = self.s.sender
        msg["To"] = ", ".join(self.s.to)
        msg.set_content(json.dumps(message, indent=2) + "\n")
        cls = smtplib.SMTP_SSL if self.s.ssl else smtplib.SMTP
        with cls(self.s.host, self.s.port, timeout=self.timeout) as smtp:
            if self.s.starttls:
                smtp.starttls()
            if self.s.user:
                smtp.login(self.s.user, self.s.password or "")
            smtp.send_message(msg)


class Notifier:
    """`deliver(event, alert)`: logs the alert and queues it for every receiver. `start()` / `stop()` the thread.
    `delivered` and `failures` count per receiver name; `idle` is set whenever nothing waits (tests wait on it)."""

    def __init__(self, receivers=(), gateway_name=None, now=time.time):
        self.receivers = list(receivers)
        self.gateway_name = gateway_name or socket.gethostname()
        self._now = now
        self._queues = {r.name: collections.deque() for r in self.receivers}
        self._cond = threading.Condition()
        self._stop = False
        self._thread = None
        self.delivered = {r.name: 0 for r in self.receivers}
        self.failures = {r.name: 0 for r in self.receivers}
        self.idle = threading.Event()
        self.idle.set()

    def deliver(self, event, alert):
        body = alert.as_dict()
        (log.warning if event == "open" else log.info)(alert_text(event, body))
        if not self.receivers:
            return
        message = {"event": event, "alert": body, "gateway": self.gateway_name,
                   "sent_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._now()))}
        with self._cond:
            for r in self.receivers:
                q = self._queues[r.name]
                if len(q) >= QUEUE_MAX:
                    old = q.popleft()
                    log.error("alerts: %s: %d messages waiting, giving up the oldest (%s)", r.name, QUEUE_MAX,
                              alert_text(old[0]["event"], old[0]["alert"]))
                q.append([message, self._now(), 0.0, FIRST_RETRY_S])   # message, queued at, next try, pause
            self.idle.clear()
            self._cond.notify()

    def start(self):
        if self.receivers:
            self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
            self._thread.start()

    def stop(self):
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=TIMEOUT_S + 5)

    def _run(self):
        while True:
            with self._cond:
                if self._stop:
                    return
                due = self._next_due()
                if due is None:
                    self.idle.set()
                    self._cond.wait()
                    continue
                wait = due - self._now()
                if wait > 0:
                    self._cond.wait(min(wait, 1.0))
                    continue
            self._try_heads()

    def _next_due(self):
        heads = [q[0][2] for q in self._queues.values() if q]
        return min(heads) if heads else None

    def _try_heads(self):
        """Try the first waiting message of each receiver whose turn it is; in order, so they arrive in order."""
        for r in self.receivers:
            with self._cond:
                q = self._queues[r.name]
                if not q or q[0][2] > self._now():
                    continue
                item = q[0]
            try:
                r.send(item[0])
            except (OSError, urllib.error.URLError, smtplib.SMTPException, ValueError) as e:
                self.failures[r.name] += 1
                with self._cond:
                    if self._now() - item[1] > GIVE_UP_S:
                        q.popleft()
                        log.error("alerts: %s: gave up after a day: %s", r.name, alert_text(
                            item[0]["event"], item[0]["alert"]))
                    else:
                        item[2] = self._now() + item[3]
                        item[3] = min(item[3] * 2, MAX_RETRY_S)
                if self.failures[r.name] == 1 or self.failures[r.name] % 10 == 0:
                    log.warning("alerts: %s: cannot deliver (%s); trying again", r.name, e)
                continue
            with self._cond:
                q.popleft()
                self.delivered[r.name] += 1
