"""End to end: accepting payments durably over real HTTP, with a real PostgreSQL (API.md 1, 2, 3, 6)."""

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Bus, PgCluster, keys_dir, raw_http, run_paybusd  # noqa: E402
from test_connections import SANITIZED, rss_mb  # noqa: E402
from paybus_client import Client, canonical  # noqa: E402

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def pay_together(port, prefix, count):
    """Pays PREFIX-1 .. PREFIX-count at once, each on its own connection;
    returns the answers and the seconds until the last one came."""
    results = []

    def send(n):
        other = Client("127.0.0.1", port)
        results.append(other.pay(f"{prefix}-{n}", amount=3))
        other.close()

    started = time.monotonic()
    threads = [threading.Thread(target=send, args=(n,)) for n in range(1, count + 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.monotonic() - started


class AcceptPayments(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        cls.pg.start()
        cls.bus = Bus(cls.pg.url).start()
        cls.client = Client("127.0.0.1", cls.bus.port)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.bus.destroy()
        cls.pg.destroy()

    def wait_rows(self, sql, expected, timeout=20):
        deadline = time.time() + timeout
        value = None
        while time.time() < deadline:
            value = int(self.pg.scalar(sql))
            if value == expected:
                return
            time.sleep(0.1)
        self.fail(f"{sql} -> {value}, expected {expected}")

    def test_accepted_payment_is_acknowledged_then_reaches_the_database(self):
        status, body, _ = self.client.pay("T1-A-1001", amount=1999, subject="coffee")
        self.assertEqual(status, 202, body)
        self.assertEqual(body["status"], "PROCESSING")
        self.assertEqual(body["merchant_order_no"], "T1-A-1001")
        self.assertEqual(body["amount"], 1999)
        self.assertEqual(body["currency"], "CNY")
        self.assertRegex(body["pay_id"], r"^\d{1,32}$")
        self.assertRegex(body["created_at"], RFC3339_MS)
        pay_id = body["pay_id"]
        self.wait_rows(f"SELECT count(*) FROM payment_orders WHERE pay_id = '{pay_id}'", 1)
        row = self.pg.query("SELECT merchant_id, merchant_order_no, amount, currency, subject, "
                            f"instance_id FROM payment_orders WHERE pay_id = '{pay_id}'")[0]
        self.assertEqual(row[:5], ["demo", "T1-A-1001", "1999", "CNY", "coffee"])
        instance = self.pg.scalar("SELECT min(instance_id) FROM paybus_instances")
        self.assertEqual(row[5], instance)

    def test_any_subject_reaches_the_database_exactly(self):
        # Rows go to PostgreSQL as array literals: quotes, backslashes, braces,
        # commas and the word NULL must arrive as they were sent.
        subject = 'say "hi", {x} \\ back\\slash NULL \u00fcn\u00efc\u00f6d\u00e9 \u6f22'
        status, body, _ = self.client.pay("T1-S-1", amount=7, subject=subject)
        self.assertEqual(status, 202, body)
        status, bare, _ = self.client.pay("T1-S-2", amount=8)
        self.assertEqual(status, 202, bare)
        for pay_id in (body["pay_id"], bare["pay_id"]):
            self.wait_rows(f"SELECT count(*) FROM payment_orders WHERE pay_id = '{pay_id}'", 1)
        digest = self.pg.scalar(f"SELECT md5(subject) FROM payment_orders WHERE pay_id = '{body['pay_id']}'")
        self.assertEqual(digest, hashlib.md5(subject.encode()).hexdigest())
        self.assertEqual(self.pg.scalar("SELECT count(*) FROM payment_orders WHERE pay_id = "
                                        f"'{bare['pay_id']}' AND subject IS NULL"), "1")
        created = self.pg.scalar("SELECT to_char(created_at AT TIME ZONE 'UTC', "
                                 "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM payment_orders "
                                 f"WHERE pay_id = '{body['pay_id']}'")
        self.assertEqual(created, body["created_at"])

    def test_database_sink_rounds_stay_bounded_under_a_trickle(self):
        # A steady trickle wakes the sink after every commit. It may look at
        # its outbox at most once per gather time (20 ms) plus its idle poll;
        # a wake that cut an idle poll short once left that poll to run on,
        # and the rounds a second grew for as long as the bus ran.
        def trickle(seconds, prefix):
            end = time.time() + seconds
            n = 0
            while time.time() < end:
                n += 1
                status, body, _ = self.client.pay(f"{prefix}-{n}", amount=1)
                self.assertEqual(status, 202, body)
                time.sleep(0.005)
            return n

        trickle(4, "T1-R-warm")
        rates = []
        for window in range(2):
            before = self.bus.metric("paybus_db_delivery_rounds_total")
            started = time.time()
            sent = trickle(3, f"T1-R-{window}")
            rates.append((self.bus.metric("paybus_db_delivery_rounds_total") - before)
                         / (time.time() - started))
            self.assertGreater(sent, 100)
        print(f"sink rounds a second under a trickle: {rates[0]:.1f}, then {rates[1]:.1f}", file=sys.stderr)
        for rate in rates:
            self.assertLessEqual(rate, 1000 / 20 + 5)

    def test_same_order_again_returns_the_same_payment(self):
        status, first, _ = self.client.pay("T1-B-1", amount=500, subject="tea")
        self.assertEqual(status, 202)
        status, again, _ = self.client.pay("T1-B-1", amount=500, subject="tea")
        self.assertEqual(status, 200)
        self.assertEqual(again["pay_id"], first["pay_id"])
        self.wait_rows("SELECT count(*) FROM payment_orders WHERE merchant_order_no = 'T1-B-1'", 1)

    def test_same_order_with_any_field_different_is_a_conflict(self):
        self.assertEqual(self.client.pay("T1-C-1", amount=500)[0], 202)
        for change in [{"amount": 501}, {"currency": "USD"}, {"subject": "x"},
                       {"channel": "sim-a"}, {"notify_url": "http://127.0.0.1:1/n"},
                       {"expire_seconds": 901}]:
            fields = {"amount": 500}
            fields.update(change)
            status, body, _ = self.client.pay("T1-C-1", **fields)
            self.assertEqual(status, 409, change)
            self.assertEqual(body["error"]["code"], "idempotency_conflict")
        # An omitted optional field counts as its default.
        self.assertEqual(self.client.pay("T1-C-1", amount=500, expire_seconds=900)[0], 200)

    def test_concurrent_duplicates_make_exactly_one_payment(self):
        results = []

        def send():
            client = Client("127.0.0.1", self.bus.port)
            results.append(client.pay("T1-D-race", amount=42))
            client.close()

        threads = [threading.Thread(target=send) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(r[0] for r in results)
        self.assertEqual(statuses.count(202), 1, statuses)
        self.assertEqual(statuses.count(200), 15, statuses)
        self.assertEqual(len({r[1]["pay_id"] for r in results}), 1)
        self.wait_rows("SELECT count(*) FROM payment_orders WHERE merchant_order_no = 'T1-D-race'", 1)

    def test_lookup_by_pay_id_and_by_order_no(self):
        _, created, _ = self.client.pay("T1-E-1", amount=77)
        status, by_id, _ = self.client.request("GET", "/v1/payments/" + created["pay_id"])
        self.assertEqual(status, 200)
        self.assertEqual(by_id["pay_id"], created["pay_id"])
        self.assertIn("channel", by_id)
        status, by_no, _ = self.client.request("GET", "/v1/payments?merchant_order_no=T1-E-1")
        self.assertEqual(status, 200)
        self.assertEqual(by_no["pay_id"], created["pay_id"])
        self.assertEqual(self.client.request("GET", "/v1/payments/99999999")[0], 404)
        self.assertEqual(self.client.request("GET", "/v1/payments?merchant_order_no=nope")[0], 404)
        other = Client("127.0.0.1", self.bus.port, merchant="other", secret="other-secret")
        status, body, _ = other.request("GET", "/v1/payments/" + created["pay_id"])
        self.assertEqual((status, body["error"]["code"]), (404, "not_found"))
        self.assertEqual(other.request("GET", "/v1/payments?merchant_order_no=T1-E-1")[0], 404)
        other.close()

    def test_rsa_merchant(self):
        rsa = Client("127.0.0.1", self.bus.port, merchant="rsa-shop",
                     rsa_key=os.path.join(keys_dir(), "merchant-rsa.key.pem"))
        status, body, _ = rsa.pay("T1-R-1", amount=10)
        self.assertEqual(status, 202, body)
        # An hmac signature for an rsa merchant is refused.
        bad = Client("127.0.0.1", self.bus.port, merchant="rsa-shop", secret="whatever")
        self.assertEqual(bad.pay("T1-R-2")[0], 401)
        rsa.close()
        bad.close()

    def assert_error(self, response, status, code, field=None):
        got_status, body, _ = response
        self.assertEqual(got_status, status, body)
        self.assertEqual(body["error"]["code"], code, body)
        self.assertIsInstance(body["error"]["message"], str)
        if field:
            self.assertIn(field, body["error"]["message"])

    def test_validation_errors(self):
        c = self.client
        self.assert_error(c.request("POST", "/v1/payments", "{not json"), 400, "invalid_json")
        self.assert_error(c.request("POST", "/v1/payments", "[1,2]"), 400, "invalid_json")
        base = {"merchant_order_no": "T1-V-1", "amount": 100, "currency": "CNY"}
        for missing in ["merchant_order_no", "amount", "currency"]:
            body = dict(base)
            del body[missing]
            self.assert_error(c.request("POST", "/v1/payments", body), 400, "missing_field", missing)
        self.assert_error(c.request("POST", "/v1/payments", dict(base, foo=1)), 400, "unknown_field", "foo")
        invalid = [
            ("merchant_order_no", ""), ("merchant_order_no", "a" * 65), ("merchant_order_no", "a b"),
            ("merchant_order_no", 12), ("amount", 0), ("amount", -5), ("amount", 10**12 + 1),
            ("amount", 1.5), ("amount", "100"), ("amount", True), ("currency", "cny"),
            ("currency", "CNYY"), ("currency", 156), ("subject", 5), ("subject", "x" * 257),
            ("notify_url", "ftp://x"), ("notify_url", 3), ("expire_seconds", 0),
            ("expire_seconds", 10**9), ("expire_seconds", "900"), ("channel", 7),
        ]
        for field, value in invalid:
            self.assert_error(c.request("POST", "/v1/payments", dict(base, **{field: value})),
                              400, "invalid_field", field)
        self.assert_error(c.request("POST", "/v1/payments", dict(base, channel="nowhere")),
                          400, "unknown_channel")
        # Nothing of the refused requests was stored.
        self.assertEqual(c.request("GET", "/v1/payments?merchant_order_no=T1-V-1")[0], 404)

    def test_authentication_errors(self):
        c = self.client
        body = json.dumps({"merchant_order_no": "T1-U-1", "amount": 1, "currency": "CNY"}).encode()
        self.assert_error(c.request("POST", "/v1/payments", body, sign=False), 401, "unauthenticated")
        self.assert_error(c.request("POST", "/v1/payments", body, signature="hmac-sha256=00"),
                          401, "unauthenticated")
        self.assert_error(c.request("POST", "/v1/payments", body, signature="nonsense"),
                          401, "unauthenticated")
        self.assert_error(c.request("POST", "/v1/payments", body, nonce="short"), 401, "unauthenticated")
        self.assert_error(c.request("POST", "/v1/payments", body, timestamp="12x"), 401, "unauthenticated")
        stranger = Client("127.0.0.1", self.bus.port, merchant="stranger", secret="demo-secret")
        self.assert_error(stranger.request("POST", "/v1/payments", body), 401, "unauthenticated")
        stranger.close()
        self.assert_error(c.request("POST", "/v1/payments", body, timestamp=int(time.time()) - 301),
                          401, "stale_timestamp")
        self.assert_error(c.request("POST", "/v1/payments", body, timestamp=int(time.time()) + 301),
                          401, "stale_timestamp")
        # The body is covered by the signature: a changed body fails.
        headers = c.headers("POST", "/v1/payments", body)
        tampered = body.replace(b'"amount": 1', b'"amount": 9')
        self.assert_error(c.request("POST", "/v1/payments", tampered, sign=False, headers=headers),
                          401, "unauthenticated")
        # Replay: the same signed request twice.
        headers = c.headers("POST", "/v1/payments", body)
        self.assertEqual(c.request("POST", "/v1/payments", body, sign=False, headers=headers)[0], 202)
        self.assert_error(c.request("POST", "/v1/payments", body, sign=False, headers=headers),
                          401, "replayed_request")
        # The query is part of the signed target.
        headers = c.headers("GET", "/v1/payments?merchant_order_no=T1-U-1", b"")
        self.assert_error(c.request("GET", "/v1/payments?merchant_order_no=T1-U-2", sign=False,
                                    headers=headers), 401, "unauthenticated")

    def test_http_errors(self):
        c = self.client
        self.assert_error(c.request("GET", "/nowhere"), 404, "not_found")
        self.assert_error(c.request("DELETE", "/v1/payments"), 405, "method_not_allowed")
        self.assert_error(c.request("POST", "/v1/payments/123", "{}"), 405, "method_not_allowed")
        port = self.bus.port
        no_length = raw_http(port, b"POST /v1/payments HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(no_length.startswith(b"HTTP/1.1 411"), no_length[:80])
        big = raw_http(port, b"POST /v1/payments HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n")
        self.assertTrue(big.startswith(b"HTTP/1.1 413"), big[:80])
        chunk = b"a" * 40000
        chunked = (b"POST /v1/payments HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + b"%x\r\n" % len(chunk) + chunk + b"\r\n" + b"%x\r\n" % len(chunk) + chunk + b"\r\n0\r\n\r\n")
        self.assertTrue(raw_http(port, chunked).startswith(b"HTTP/1.1 413"))
        huge_header = b"GET /healthz HTTP/1.1\r\nX-Big: " + b"h" * 17000 + b"\r\n\r\n"
        self.assertTrue(raw_http(port, huge_header).startswith(b"HTTP/1.1 431"))
        smuggle = raw_http(port, b"POST /v1/payments HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                                 b"Content-Length: 3\r\n\r\n{}")
        self.assertTrue(smuggle.startswith(b"HTTP/1.1 400"), smuggle[:80])
        smuggle = raw_http(port, b"POST /v1/payments HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        self.assertTrue(smuggle.startswith(b"HTTP/1.1 400"), smuggle[:80])
        self.assertTrue(raw_http(port, b"\x16\x03\x01garbage\r\n\r\n").startswith(b"HTTP/1.1 400"))

    def test_keep_alive_and_pipelining_answer_in_order(self):
        c = self.client
        requests = b""
        order_nos = [f"T1-P-{i}" for i in range(5)]
        for no in order_nos:
            body = json.dumps({"merchant_order_no": no, "amount": 1, "currency": "CNY"}).encode()
            headers = c.headers("POST", "/v1/payments", body)
            requests += b"POST /v1/payments HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % len(body)
            requests += b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items()) + b"\r\n" + body
        requests += b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        answer = raw_http(self.bus.port, requests, timeout=10)
        self.assertEqual(answer.count(b"HTTP/1.1 202"), 5, answer)
        positions = [answer.index(no.encode()) for no in order_nos]
        self.assertEqual(positions, sorted(positions))
        self.assertTrue(answer.rstrip().endswith(b'{"status":"ok"}'))

    def test_answers_a_client_does_not_read_yet_arrive_whole_and_in_order(self):
        # Answers go out with one send() while the socket takes them. A client
        # that keeps asking (60 at a time, within http.max_pipeline, each time
        # the bus has answered) and never reads fills its socket (a few MB on
        # loopback); then the bus reads no more of its requests until it
        # reads, so it holds no more than the answers already asked for. When
        # the client reads, everything arrives, whole and in order.
        metrics = raw_http(self.bus.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertIn(b"HTTP/1.1 200", metrics)
        per_round = 60
        rounds = 40_000_000 // (per_round * len(metrics)) + 1  # 40 MB of answers
        answered = 'paybus_http_requests_total{code="200"}'
        before = self.bus.metric(answered)
        looks = 1  # each look at the metric is one more 200, counted after it
        rss_before = rss_mb(self.bus.process.pid)
        sent = 0
        held = False
        with socket.create_connection(("127.0.0.1", self.bus.port), timeout=120) as s:
            # A fixed window, larger than loopback's 64 kB segments: a smaller one
            # is filled a segment at a time on TCP's persist timer (minutes).
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 262144)
            while sent < rounds * per_round and not held:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * per_round)
                sent += per_round
                # Until the bus answered them, or answers no more (held): ten
                # looks a tenth of a second apart without a new answer.
                last, unchanged, deadline = -1, 0, time.time() + 60
                while True:
                    count = self.bus.metric(answered) - before - looks
                    looks += 1
                    if count >= sent:
                        break
                    unchanged = unchanged + 1 if count == last else 0
                    last = count
                    if unchanged >= 10:
                        held = True
                        break
                    self.assertLess(time.time(), deadline, "the bus neither answered nor held")
                    time.sleep(0.1)
            held_rss = rss_mb(self.bus.process.pid)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            chunks = []
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        self.assertTrue(held, f"the bus made all {sent} answers for a client that read none")
        if not SANITIZED:  # ASan's allocator keeps freed memory in quarantine
            self.assertLess(held_rss - rss_before, 16, "the bus held the answers of a client not reading")
        answer = b"".join(chunks)
        self.assertGreater(len(answer), 2_000_000)  # more than the socket took at once
        self.assertEqual(answer.count(b"HTTP/1.1 200"), sent + 1)
        self.assertEqual(answer.count(b"# HELP paybus_http_requests_total"), sent)
        self.assertTrue(answer.rstrip().endswith(b'{"status":"ok"}'))
        # Answers took the one-send path (CAF's handles are their sockets).
        self.assertNotIn("not their sockets' numbers", self.bus.log())

    def test_operations_endpoints(self):
        self.assertEqual(self.client.request("GET", "/healthz", sign=False)[0], 200)
        self.assertEqual(self.client.request("GET", "/readyz", sign=False)[0], 200)
        self.client.pay("T1-M-1")
        self.bus.wait_metric("paybus_db_up", lambda v: v == 1)
        self.bus.wait_metric("paybus_db_backlog", lambda v: v == 0)
        self.assertGreaterEqual(self.bus.metric("paybus_payments_accepted_total"), 1)
        self.assertGreaterEqual(self.bus.metric("paybus_http_requests_total"), 1)
        self.assertIsNotNone(self.bus.metric("paybus_request_duration_seconds_count"))
        self.assertIsNotNone(self.bus.metric("paybus_notify_backlog"))
        self.assertIsNotNone(self.bus.metric("paybus_payment_results_total"))


class StartAndStop(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        cls.pg.start()

    @classmethod
    def tearDownClass(cls):
        cls.pg.destroy()

    def test_config_errors_exit_2_naming_the_key(self):
        bus = Bus(self.pg.url)
        for sets, key in [(["http.listen=nonsense"], "http.listen"),
                          (["node.order_shards=zero"], "node.order_shards"),
                          (["http.max_body_bytes=5"], "http.max_body_bytes"),
                          (["no.such_key=1"], "no.such_key"),
                          (["signing.private_key=/nonexistent.pem"], "signing.private_key"),
                          (["merchants.0.auth=md5"], "merchants.0.auth"),
                          (["channels.0.ca_file=/etc/hostname"], "channels.0.ca_file"),  # an http:// URL
                          (["channels.0.url=https://127.0.0.1:9",
                            f"channels.0.ca_file={keys_dir()}/paybus.pub.pem"], "channels.0.ca_file")]:
            code, output = run_paybusd(["--config", bus.config_path] + sum([["--set", s] for s in sets], []))
            self.assertEqual(code, 2, output)
            self.assertIn(key, output)
            self.assertEqual(len(output.strip().splitlines()), 1, output)
        code, output = run_paybusd(["--config", "/nonexistent.toml"])
        self.assertEqual(code, 2)
        code, output = run_paybusd([])
        self.assertEqual(code, 2)
        bus.destroy()

    def test_short_rsa_key_is_refused(self):
        bus = Bus(self.pg.url)
        short = os.path.join(bus.dir, "short.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024",
                        "-out", short], check=True, capture_output=True)
        code, output = run_paybusd(["--config", bus.config_path, "--set", f"signing.private_key={short}"])
        self.assertEqual(code, 2, output)
        self.assertIn("2048", output)
        bus.destroy()

    def test_sigterm_exits_0_and_a_restart_keeps_everything(self):
        bus = Bus(self.pg.url).start()
        client = Client("127.0.0.1", bus.port)
        _, created, _ = client.pay("T2-S-1", amount=5)
        client.close()
        self.assertEqual(bus.stop(), 0)
        bus.start()
        client = Client("127.0.0.1", bus.port)
        status, again, _ = client.pay("T2-S-1", amount=5)
        self.assertEqual((status, again["pay_id"]), (200, created["pay_id"]))
        status, fresh, _ = client.pay("T2-S-2", amount=5)
        self.assertGreater(int(fresh["pay_id"]), int(created["pay_id"]))
        client.close()
        self.assertEqual(bus.stop(), 0)
        bus.destroy()

    def test_gathered_commits_share_a_sync_and_survive_a_kill(self):
        # store.gather_us: a commit starts no sooner than 300 ms after the
        # last one began. Twelve payments sent together after a first one
        # share one synced batch, each is answered only once it is durable,
        # and a SIGKILL right after the answers loses none of them.
        bus = Bus(self.pg.url, sets=["store.gather_us=300000"]).start()
        client = Client("127.0.0.1", bus.port)
        self.assertEqual(client.pay("T2-G-0", amount=3)[0], 202)
        first_batches = bus.metric("paybus_store_batches_total")
        results, waited = pay_together(bus.port, "T2-G", 12)
        self.assertEqual(sorted(r[0] for r in results), [202] * 12)
        # The first payment's nonce and the twelve orders: at most two more
        # commits (a thread that starts late may miss the first), not twelve.
        self.assertLessEqual(bus.metric("paybus_store_batches_total") - first_batches, 3)
        self.assertGreaterEqual(waited, 0.1)
        client.close()
        bus.kill9()
        bus.start()
        check = Client("127.0.0.1", bus.port)
        for r in results:
            status, found, _ = check.request("GET", "/v1/payments/" + r[1]["pay_id"])
            self.assertEqual((status, found["pay_id"]), (200, r[1]["pay_id"]))
        check.close()
        self.assertEqual(bus.stop(), 0)
        bus.destroy()

    def replay_after(self, order_no, stop):
        """Pays once, stops the bus with `stop`, restarts it and replays the very same signed
        request: it must be refused as a replay."""
        bus = Bus(self.pg.url).start()
        client = Client("127.0.0.1", bus.port)
        body = json.dumps({"merchant_order_no": order_no, "amount": 1, "currency": "CNY"}).encode()
        headers = client.headers("POST", "/v1/payments", body)
        self.assertEqual(client.request("POST", "/v1/payments", body, sign=False, headers=headers)[0], 202)
        client.close()
        stop(bus)
        bus.start()
        client = Client("127.0.0.1", bus.port)
        status, answer, _ = client.request("POST", "/v1/payments", body, sign=False, headers=headers)
        self.assertEqual((status, answer["error"]["code"]), (401, "replayed_request"))
        client.close()
        self.assertEqual(bus.stop(), 0)
        bus.destroy()

    def test_nonce_is_refused_again_after_a_restart(self):
        self.replay_after("T2-N-1", lambda bus: self.assertEqual(bus.stop(), 0))

    def test_nonce_of_an_acknowledged_create_survives_a_kill(self):
        # A create's nonce is written in the synced batch that holds its
        # order, so a SIGKILL right after the 202 cannot forget it.
        self.replay_after("T2-NK-1", lambda bus: bus.kill9())

    def test_gathered_creates_go_to_the_store_together(self):
        # http.gather_us: the ingress holds the creates of 100 ms and sends
        # them to the store writer in one message, which commits them in one
        # synced batch; each is still answered only once it is durable.
        bus = Bus(self.pg.url, sets=["http.gather_us=100000"]).start()
        client = Client("127.0.0.1", bus.port)
        self.assertEqual(client.pay("T2-HG-0", amount=3)[0], 202)
        first_batches = bus.metric("paybus_store_batches_total")
        results, waited = pay_together(bus.port, "T2-HG", 12)
        self.assertEqual(sorted(r[0] for r in results), [202] * 12)
        # Twelve orders in at most two commits (a thread that starts late
        # may miss the first gathering), not twelve.
        self.assertLessEqual(bus.metric("paybus_store_batches_total") - first_batches, 2)
        self.assertGreaterEqual(waited, 0.1)
        self.assertEqual(bus.metric("paybus_payments_accepted_total"), 13)
        client.close()
        self.assertEqual(bus.stop(), 0)
        bus.destroy()

    def test_a_late_answer_never_reaches_the_next_connection_on_its_socket(self):
        # A connection is named by its socket's number, which the next
        # connection gets once the first is closed. Client A sends a create and
        # hangs up at once; client B connects (on A's number) and sends its own
        # while A's is still held (http.gather_us): both are answered in one
        # batch, A's first. B must get its own answer, never A's.
        bus = Bus(self.pg.url, sets=["http.gather_us=400000"]).start()
        client = Client("127.0.0.1", bus.port)

        def create(order_no):
            body = json.dumps({"merchant_order_no": order_no, "amount": 1, "currency": "CNY"}).encode()
            headers = client.headers("POST", "/v1/payments", body)
            return (b"POST /v1/payments HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % len(body)
                    + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items()) + b"\r\n" + body)

        for attempt in range(5):
            gone = socket.create_connection(("127.0.0.1", bus.port))
            gone.sendall(create(f"T2-LATE-A{attempt}"))
            gone.close()
            # The bus saw A go (the one connection left is this look itself),
            # so B's connection gets A's socket number.
            bus.wait_metric("paybus_http_connections", lambda open_now: open_now <= 1)
            answer = raw_http(bus.port, create(f"T2-LATE-B{attempt}"), timeout=10, read_all=False)
            self.assertIn(b"HTTP/1.1 202", answer)
            self.assertIn(f"T2-LATE-B{attempt}".encode(), answer)
            self.assertNotIn(f"T2-LATE-A{attempt}".encode(), answer)
        # A's creates were made all the same (it hung up after sending).
        status, body, _ = client.request("GET", "/v1/payments?merchant_order_no=T2-LATE-A0")
        self.assertEqual(status, 200, body)
        client.close()
        self.assertEqual(bus.stop(), 0)
        bus.destroy()

    def test_second_bus_on_the_same_store_or_port_is_refused(self):
        bus = Bus(self.pg.url).start()
        code, output = run_paybusd(["--config", bus.config_path, "--set", "http.listen=127.0.0.1:0"])
        self.assertEqual(code, 1)
        self.assertIn("held by another process", output)
        other = Bus(self.pg.url, sets=[f"http.listen=127.0.0.1:{bus.port}"])
        code, output = run_paybusd(["--config", other.config_path, "--set", f"http.listen=127.0.0.1:{bus.port}"])
        self.assertEqual(code, 1)
        self.assertIn("Address already in use", output)
        bus.destroy()
        other.destroy()

    def test_first_start_with_the_database_down(self):
        down = "postgresql:///paybus?host=/nonexistent&user=postgres"
        bus = Bus(down)
        code, output = run_paybusd(["--config", bus.config_path])
        self.assertEqual(code, 1)
        self.assertIn("node.instance_id", output)
        bus.sets = ["node.instance_id=77"]
        bus.start()
        client = Client("127.0.0.1", bus.port)
        status, body, _ = client.pay("T2-F-1")
        self.assertEqual(status, 202)
        self.assertEqual(body["pay_id"][13:18], "00077")
        self.assertEqual(client.request("GET", "/readyz", sign=False)[0], 200)
        self.assertEqual(bus.metric("paybus_db_up"), 0)
        client.close()
        # A later start remembers the instance number without the database or the key.
        self.assertEqual(bus.stop(), 0)
        bus.sets = []
        bus.start()
        client = Client("127.0.0.1", bus.port)
        self.assertEqual(client.pay("T2-F-2")[1]["pay_id"][13:18], "00077")
        client.close()
        bus.destroy()


if __name__ == "__main__":
    unittest.main(verbosity=2)
