"""End to end: many connections that pay nothing.

- 10,000 idle connections are held: payments on another connection still go
  through, the bus's memory stays bounded, and the idle timeout closes them all.
- Slowloris: connections that trickle a byte of headers at a time are closed
  by the header timeout (a timeout counted from the request's first byte, so
  trickling does not renew it), with memory bounded, and the store unchanged.

Memory is read from /proc/PID/status (VmRSS) and printed with the figures."""

import os
import resource
import selectors
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Bus, PgCluster  # noqa: E402
from paybus_client import Client  # noqa: E402

IDLE_CONNECTIONS = 10_000
SLOW_CONNECTIONS = 2_000
# Under ASan (scripts/test's second pass) memory figures are ASan's, not the bus's.
SANITIZED = os.environ.get("PAYBUS_SANITIZED") == "1"


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def open_connections(port, count):
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.setblocking(True)
        s.connect(("127.0.0.1", port))
        sockets.append(s)
    return sockets


def wait_closed(sockets, timeout):
    """Waits until the bus has closed every socket; returns how many it closed."""
    selector = selectors.DefaultSelector()
    for s in sockets:
        s.setblocking(False)
        selector.register(s, selectors.EVENT_READ)
    closed = 0
    deadline = time.time() + timeout
    while closed < len(sockets) and time.time() < deadline:
        for key, _ in selector.select(timeout=0.5):
            try:
                data = key.fileobj.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                data = b""
            if data.startswith(b"HTTP/1.1 408"):
                drain_to_eof(key.fileobj)
                data = b""
            if data == b"":
                selector.unregister(key.fileobj)
                closed += 1
            else:
                raise AssertionError(f"unexpected bytes on a connection that sent no request: {data[:80]!r}")
    selector.close()
    return closed


def drain_to_eof(sock):
    """Reads what is left of a 408 until the peer closes."""
    sock.setblocking(True)
    sock.settimeout(5)
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, socket.timeout):
        pass


class ManyConnections(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        needed = IDLE_CONNECTIONS + 1000
        if soft < needed:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))
        if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < needed:
            raise AssertionError(f"this test needs {needed} open files; the hard limit is {hard}")
        cls.pg = PgCluster()
        cls.pg.start()
        cls.bus = Bus(cls.pg.url, channels={},
                      sets=[f"http.max_connections={IDLE_CONNECTIONS + 100}", "http.idle_timeout_ms=8000",
                            "http.header_timeout_ms=1500"]).start()
        cls.pid = cls.bus.process.pid

    @classmethod
    def tearDownClass(cls):
        cls.bus.destroy()
        cls.pg.destroy()

    def held_connections(self):
        """Client connections the bus holds, not counting the one asking."""
        return self.bus.metric("paybus_http_connections") - 1

    def pay_some(self, prefix, count):
        client = Client("127.0.0.1", self.bus.port)
        started = time.time()
        for i in range(count):
            status, body, _ = client.pay(f"{prefix}-{i}", amount=10)
            self.assertEqual(status, 202, body)
        client.close()
        return (time.time() - started) / count * 1000

    def test_1_ten_thousand_idle_connections_are_held_then_closed(self):
        baseline_ms = self.pay_some("IDLE-warm", 100)
        before = rss_mb(self.pid)
        held = open_connections(self.bus.port, IDLE_CONNECTIONS)
        try:
            time.sleep(1)
            self.assertEqual(self.held_connections(), IDLE_CONNECTIONS)
            with_idle = rss_mb(self.pid)
            # Payments go through beside them.
            loaded_ms = self.pay_some("IDLE", 200)
            self.assertEqual(self.held_connections(), IDLE_CONNECTIONS)
            per_connection_kb = (with_idle - before) * 1024 / IDLE_CONNECTIONS
            if not SANITIZED:  # ASan's allocator keeps its own quarantine and redzones
                self.assertLess(per_connection_kb, 16, "an idle connection should cost a few KB at most")
            # The idle timeout (8 s here) closes every one of them.
            closed = wait_closed(held, timeout=30)
            self.assertEqual(closed, IDLE_CONNECTIONS)
        finally:
            for s in held:
                s.close()
        time.sleep(1.5)
        self.assertEqual(self.held_connections(), 0)
        after = rss_mb(self.pid)
        print(f"\n10,000 idle connections: bus VmRSS {before:.1f} MB before, {with_idle:.1f} MB holding them "
              f"({per_connection_kb:.1f} KB each), {after:.1f} MB after the idle timeout closed all; "
              f"payment round trip {baseline_ms:.2f} ms alone, {loaded_ms:.2f} ms beside them")

    def test_2_slowloris_connections_are_closed_by_the_header_timeout(self):
        keys_before = self.pg.scalar("SELECT count(*) FROM payment_orders")
        accepted_before = self.bus.metric("paybus_payments_accepted_total")
        before = rss_mb(self.pid)
        slow = open_connections(self.bus.port, SLOW_CONNECTIONS)
        request = b"POST /v1/payments HTTP/1.1\r\nHost: x\r\nX-Paybus-Merchant: demo\r\nX-Padding: " + b"a" * 4000
        started = time.time()
        peak = before
        open_ones = list(slow)
        sent = 0
        # A byte per connection every 100 ms: each request would take minutes to finish.
        while open_ones and time.time() - started < 6:
            still = []
            for s in open_ones:
                try:
                    s.send(request[sent:sent + 1] if sent < len(request) else b"a")
                    still.append(s)
                except OSError:
                    pass  # closed by the bus
            open_ones = still
            sent += 1
            peak = max(peak, rss_mb(self.pid))
            time.sleep(0.1)
        closed = wait_closed(open_ones, timeout=10) + (len(slow) - len(open_ones))
        for s in slow:
            s.close()
        elapsed = time.time() - started
        self.assertEqual(closed, SLOW_CONNECTIONS)
        self.assertLess(elapsed, 12, "the header timeout (1.5 s) should close trickling requests")
        if not SANITIZED:
            self.assertLess(peak - before, 64)
        time.sleep(1)
        self.assertEqual(self.held_connections(), 0)
        self.assertEqual(self.bus.metric("paybus_payments_accepted_total"), accepted_before)
        self.assertEqual(self.pg.scalar("SELECT count(*) FROM payment_orders"), keys_before)
        # And the bus pays on.
        self.pay_some("AFTER-SLOW", 20)
        print(f"\n{SLOW_CONNECTIONS} slowloris connections: all closed in {elapsed:.1f} s; bus VmRSS "
              f"{before:.1f} MB before, peak {peak:.1f} MB; nothing stored")


if __name__ == "__main__":
    unittest.main(verbosity=2)
