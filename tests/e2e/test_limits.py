"""End to end: the ingress's limits, over real sockets: read timeouts, connection count,
pipelining depth, and that refused requests leave the store unchanged."""

import json
import re
import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Bus, PgCluster, raw_http  # noqa: E402
from paybus_client import Client  # noqa: E402


class IngressLimits(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        cls.pg.start()
        cls.bus = Bus(cls.pg.url, sets=["http.header_timeout_ms=500", "http.body_timeout_ms=500",
                                        "http.idle_timeout_ms=1500", "http.max_connections=4",
                                        "http.max_pipeline=2"]).start()

    @classmethod
    def tearDownClass(cls):
        cls.bus.destroy()
        cls.pg.destroy()

    def read_until_closed(self, sock, timeout=5):
        sock.settimeout(timeout)
        data = b""
        started = time.time()
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data, time.time() - started
            data += chunk

    def test_slow_headers_and_slow_bodies_get_408_and_are_closed(self):
        with socket.create_connection(("127.0.0.1", self.bus.port)) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finish
            data, waited = self.read_until_closed(s)
            self.assertTrue(data.startswith(b"HTTP/1.1 408"), data[:60])
            self.assertLess(waited, 3)
        with socket.create_connection(("127.0.0.1", self.bus.port)) as s:
            s.sendall(b"POST /v1/payments HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{\"a\"")
            data, waited = self.read_until_closed(s)
            self.assertTrue(data.startswith(b"HTTP/1.1 408"), data[:60])

    def test_idle_keep_alive_connections_are_closed(self):
        with socket.create_connection(("127.0.0.1", self.bus.port)) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            data, waited = self.read_until_closed(s, timeout=10)
            self.assertTrue(data.startswith(b"HTTP/1.1 200"))
            self.assertGreater(waited, 1.0)
            self.assertLess(waited, 5.0)

    def test_connections_over_the_limit_are_refused(self):
        held = [socket.create_connection(("127.0.0.1", self.bus.port)) for _ in range(4)]
        try:
            time.sleep(0.2)
            extra = socket.create_connection(("127.0.0.1", self.bus.port))
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            data, _ = self.read_until_closed(extra)
            self.assertEqual(data, b"")
            extra.close()
        finally:
            for s in held:
                s.close()
        time.sleep(0.3)
        self.assertEqual(raw_http(self.bus.port, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")[:12],
                         b"HTTP/1.1 200")

    def test_pipelining_beyond_the_limit_is_refused_with_429_in_order(self):
        client = Client("127.0.0.1", self.bus.port)
        requests = b""
        for i in range(5):
            body = json.dumps({"merchant_order_no": f"L-P-{i}", "amount": 1, "currency": "CNY"}).encode()
            headers = client.headers("POST", "/v1/payments", body)
            requests += b"POST /v1/payments HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % len(body)
            requests += b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items()) + b"\r\n" + body
        requests += b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"
        answer = raw_http(self.bus.port, requests, timeout=10)
        statuses = [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]
        self.assertEqual(statuses[:2], [202, 202], statuses)
        self.assertIn(429, statuses)
        self.assertIn(b"Retry-After: 1", answer)
        # What was refused was not stored.
        for i, status in enumerate(statuses[:5]):
            found = client.request("GET", f"/v1/payments?merchant_order_no=L-P-{i}")[0]
            self.assertEqual(found, 200 if status == 202 else 404)
        client.close()

    def test_refused_requests_change_nothing_in_the_database(self):
        client = Client("127.0.0.1", self.bus.port)
        client.pay("L-R-ok")
        self.bus.wait_metric("paybus_db_backlog", lambda v: v == 0)
        before = self.pg.scalar("SELECT count(*) FROM payment_orders")
        accepted_before = self.bus.metric("paybus_payments_accepted_total")
        client.request("POST", "/v1/payments", "{bad")
        client.request("POST", "/v1/payments", {"merchant_order_no": "L-R-1", "amount": 0, "currency": "CNY"})
        client.request("POST", "/v1/payments", {"merchant_order_no": "L-R-2", "amount": 1, "currency": "CNY"},
                       signature="hmac-sha256=" + "0" * 64)
        raw_http(self.bus.port, b"POST /v1/payments HTTP/1.1\r\nContent-Length: 99999\r\n\r\n")
        time.sleep(0.5)
        self.assertEqual(self.pg.scalar("SELECT count(*) FROM payment_orders"), before)
        self.assertEqual(self.bus.metric("paybus_payments_accepted_total"), accepted_before)
        self.assertEqual(self.bus.metric("paybus_db_backlog"), 0)
        client.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
