"""End to end: a barrage of hostile requests, each refused with its own clear
status, and the local store's keys counted before and after
(`paybus-replay stats`, every column family): not one key changes. The bus
answers a good payment afterwards. (A signed request refused for its body
has spent its nonce, in memory: sent again it is a replay.)"""

import json
import os
import random
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BUILD, Bus, PgCluster, keys_dir, raw_http  # noqa: E402
from paybus_client import Client  # noqa: E402

REPLAY = os.path.join(BUILD, "tools", "paybus-replay")


def status_of(response):
    """The status code of a raw HTTP answer, or None if the bus closed without one."""
    if not response.startswith(b"HTTP/1.1 "):
        return None
    return int(response[9:12])


class HostileInput(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        cls.pg.start()
        cls.bus = Bus(cls.pg.url, channels={})

    @classmethod
    def tearDownClass(cls):
        cls.bus.destroy()
        cls.pg.destroy()

    def store_keys(self):
        out = subprocess.run([REPLAY, "--store", os.path.join(self.bus.dir, "data", "store"), "stats"],
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        return json.loads(out.stdout)["keys"]

    def test_refused_requests_leave_every_key_of_the_store_as_it_was(self):
        bus = self.bus.start()
        client = Client("127.0.0.1", bus.port)
        for i in range(10):
            self.assertEqual(client.pay(f"H-{i}")[0], 202)
        client.close()
        self.assertEqual(bus.stop(), 0)
        before = self.store_keys()
        self.assertEqual(before["orders"], 10)

        bus.start()
        tried = self.barrage(bus.port)
        self.assertEqual(bus.stop(), 0)
        after = self.store_keys()
        self.assertEqual(after, before)
        print(f"\n{tried} hostile requests refused; store keys before and after: {before}")

        # Still healthy: the payments from before read back, a new one goes through.
        bus.start()
        client = Client("127.0.0.1", bus.port)
        self.assertEqual(client.request("GET", "/v1/payments?merchant_order_no=H-3")[0], 200)
        self.assertEqual(client.pay("H-after")[0], 202)
        client.close()

    def barrage(self, port):
        """Sends every kind of refused request; returns how many were sent."""
        client = Client("127.0.0.1", port)
        rsa = Client("127.0.0.1", port, merchant="rsa-shop",
                     rsa_key=os.path.join(keys_dir(), "merchant-rsa.key.pem"))
        good = {"merchant_order_no": "H-new", "amount": 5, "currency": "CNY"}
        now = int(time.time())
        signed = [
            # (body, expected status, expected code)
            ("{bad", 400, "invalid_json"),
            ("[1,2]", 400, "invalid_json"),
            ({"merchant_order_no": "H-x", "amount": 0, "currency": "CNY"}, 400, "invalid_field"),
            ({"merchant_order_no": "H-x", "amount": 10**13, "currency": "CNY"}, 400, "invalid_field"),
            ({"merchant_order_no": "H-x", "amount": 1.5, "currency": "CNY"}, 400, "invalid_field"),
            ({"merchant_order_no": "H x", "amount": 1, "currency": "CNY"}, 400, "invalid_field"),
            ({"merchant_order_no": "H-x" * 30, "amount": 1, "currency": "CNY"}, 400, "invalid_field"),
            ({"merchant_order_no": "H-x", "amount": 1, "currency": "cny"}, 400, "invalid_field"),
            ({"merchant_order_no": "H-x", "amount": 1}, 400, "missing_field"),
            ({"merchant_order_no": "H-x", "amount": 1, "currency": "CNY", "tip": 1}, 400, "unknown_field"),
            ({"merchant_order_no": "H-x", "amount": 1, "currency": "CNY", "channel": "nope"}, 400, "unknown_channel"),
            ({"merchant_order_no": "H-x", "amount": 1, "currency": "CNY", "expire_seconds": -5}, 400, "invalid_field"),
            ({"merchant_order_no": "H-x", "amount": 1, "currency": "CNY", "notify_url": "x" * 5000}, 400, "invalid_field"),
            ({"merchant_order_no": "H-x", "amount": 1, "currency": "CNY", "subject": "\ud800"}, 400, None),
        ]
        tried = 0
        for body, status, code in signed:
            got, answer, _ = client.request("POST", "/v1/payments", body)
            self.assertEqual(got, status, (body, answer))
            if code:
                self.assertEqual(answer["error"]["code"], code, body)
            tried += 1
        unauthenticated = [
            (dict(signature="hmac-sha256=" + "0" * 64), 401, "unauthenticated"),
            (dict(signature="rsa-sha256=AAAA"), 401, "unauthenticated"),
            (dict(signature="md5=abc"), 401, "unauthenticated"),
            (dict(timestamp=now - 3600), 401, "stale_timestamp"),
            (dict(timestamp=now + 3600), 401, "stale_timestamp"),
            (dict(timestamp="12abc"), 401, "unauthenticated"),
            (dict(nonce="short"), 401, "unauthenticated"),
            (dict(nonce="x" * 65), 401, "unauthenticated"),
        ]
        for options, status, code in unauthenticated:
            got, answer, _ = client.request("POST", "/v1/payments", good, **options)
            self.assertEqual((got, answer["error"]["code"]), (status, code), options)
            tried += 1
        stranger = Client("127.0.0.1", port, merchant="nobody", secret="whatever-secret")
        self.assertEqual(stranger.request("POST", "/v1/payments", good)[0], 401)
        self.assertEqual(client.request("POST", "/v1/payments", good, sign=False)[0], 401)
        # An RSA merchant's request signed with HMAC, and an RSA signature over another body.
        self.assertEqual(rsa.request("POST", "/v1/payments", good,
                                     signature="hmac-sha256=" + "0" * 64)[0], 401)
        tried += 3
        # A signed request refused for its body has spent its nonce: sent again, it is a replay.
        headers = client.headers("POST", "/v1/payments", b"{bad")
        self.assertEqual(client.request("POST", "/v1/payments", "{bad", headers=headers, sign=False)[0], 400)
        got, answer, _ = client.request("POST", "/v1/payments", "{bad", headers=headers, sign=False)
        self.assertEqual((got, answer["error"]["code"]), (401, "replayed_request"))
        tried += 2
        # Methods and paths that take no payment.
        for method, target in [("PUT", "/v1/payments"), ("DELETE", "/v1/payments/1"), ("GET", "/v2/x")]:
            self.assertIn(client.request(method, target)[0], (404, 405))
            tried += 1
        client.close()
        stranger.close()
        rsa.close()

        raw = [
            (b"POST /v1/payments HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
            (b"POST /v1/payments HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
            (b"POST /v1/payments HTTP/1.1\r\nHost: x\r\n\r\n", 411),
            (b"POST /v1/payments HTTP/1.1\r\nContent-Length: 999999\r\n\r\n", 413),
            (b"POST /v1/payments HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n20000\r\n" + b"a" * 70000, 413),
            (b"GET /v1/payments HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
            (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)), 400),
            (b"GET /v1/pay\x00ments HTTP/1.1\r\n\r\n", 400),
            (b"POST /v1/payments HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        ]
        for data, status in raw:
            self.assertEqual(status_of(raw_http(port, data)), status, data[:60])
            tried += 1
        # Random bytes, as a port scanner or a broken client sends them.
        rng = random.Random(4242)
        for _ in range(200):
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2048)))
            answer = raw_http(port, data, timeout=3)
            self.assertIn(status_of(answer), (None, 400, 405, 408, 411, 413, 431), answer[:60])
            tried += 1
        # Connections cut in the middle of a request.
        for cut in (10, 60, 200):
            body = json.dumps({"merchant_order_no": "H-cut", "amount": 1, "currency": "CNY"}).encode()
            signed_headers = Client("127.0.0.1", port).headers("POST", "/v1/payments", body)
            request = (b"POST /v1/payments HTTP/1.1\r\nContent-Type: application/json\r\n"
                       + b"".join(f"{k}: {v}\r\n".encode() for k, v in signed_headers.items())
                       + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(request[:len(request) - cut])
            tried += 1
        time.sleep(0.5)
        return tried


if __name__ == "__main__":
    unittest.main(verbosity=2)
