"""End to end: merchant notifications (API.md section 5) from real payments through a real
channel simulator to a real HTTP receiver: signed, retried while the merchant is down,
surviving a kill -9, at least once with a stable event_id."""

import hashlib
import hmac
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BUILD, Bus, ChannelSim, PgCluster, free_port, keys_dir  # noqa: E402
from paybus_client import Client, canonical  # noqa: E402


class Receiver:
    """A merchant's webhook endpoint: records what arrives, can be made to fail."""

    def __init__(self):
        self.port = free_port()
        self.events = []
        self.answered_ok = set()  # pay_ids of webhooks answered 200
        self.failing = False
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.events.append((dict(self.headers), body, self.path))
                code = 500 if receiver.failing else 200
                if code == 200:
                    receiver.answered_ok.add(json.loads(body)["pay_id"])
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/notify"

    def delivered(self, pay_id):
        return [(h, json.loads(b)) for h, b, _ in self.events if json.loads(b)["pay_id"] == pay_id]

    def close(self):
        self.server.shutdown()


def verify(headers, body, path, secret="demo-secret"):
    text = canonical("POST", path, headers["X-Paybus-Timestamp"], headers["X-Paybus-Nonce"], body)
    expected = "hmac-sha256=" + hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["X-Paybus-Signature"])


class Webhooks(unittest.TestCase):
    def setUp(self):
        self.pg = PgCluster()
        self.pg.start()
        self.sim = ChannelSim("sim-a").start()
        self.receiver = Receiver()
        self.bus = Bus(self.pg.url, channels={"sim-a": (self.sim.url, 100)},
                       # 4 workers (not the default 64): the hanging-merchant tests
                       # hold all but one of them with a few payments.
                       sets=["notify.retry_base_ms=100", "notify.retry_max_ms=400",
                             "notify.workers=4", "notify.untargeted_wait_ms=500"]).start()
        self.client = Client("127.0.0.1", self.bus.port)

    def tearDown(self):
        self.client.close()
        self.bus.destroy()
        self.sim.destroy()
        self.receiver.close()
        self.pg.destroy()

    def wait_delivered(self, pay_id, timeout=20):
        """Every attempt for `pay_id` (oldest first) once one was answered 200."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if pay_id in self.receiver.answered_ok:
                return [e for e in self.receiver.events if json.loads(e[1])["pay_id"] == pay_id]
            time.sleep(0.1)
        self.fail(f"no webhook for {pay_id}")

    def test_a_final_payment_sends_one_signed_webhook(self):
        status, created, _ = self.client.pay("W-1", amount=321, notify_url=self.receiver.url)
        self.assertEqual(status, 202)
        pay_id = created["pay_id"]
        headers, body, path = self.wait_delivered(pay_id)[0]
        self.assertTrue(verify(headers, body, path))
        event = json.loads(body)
        self.assertEqual(event["type"], "payment.succeeded")
        self.assertEqual(event["status"], "SUCCEEDED")
        self.assertEqual(event["merchant_order_no"], "W-1")
        self.assertEqual((event["amount"], event["currency"]), (321, "CNY"))
        self.assertEqual(headers["X-Paybus-Event"], event["event_id"])
        self.assertEqual(headers["X-Paybus-Merchant"], "demo")
        self.assertIn("finished_at", event)
        self.bus.wait_metric("paybus_notify_backlog", lambda v: v == 0)
        time.sleep(0.5)
        self.assertEqual(len(self.receiver.delivered(pay_id)), 1)

    def test_failed_payments_are_notified_too(self):
        self.sim.mode({"failed_ratio": 1})
        _, created, _ = self.client.pay("W-2", notify_url=self.receiver.url)
        headers, body, path = self.wait_delivered(created["pay_id"])[0]
        self.assertEqual(json.loads(body)["type"], "payment.failed")

    def test_merchant_down_then_up_every_webhook_arrives_with_a_stable_event_id(self):
        self.receiver.failing = True
        pay_ids = [self.client.pay(f"W-3-{i}", notify_url=self.receiver.url)[1]["pay_id"] for i in range(10)]
        # Every one refused at least once before the merchant comes back (under
        # ASan a payment can take longer than a fixed wait to become final).
        deadline = time.time() + 20
        while time.time() < deadline and not all(self.receiver.delivered(p) for p in pay_ids):
            time.sleep(0.05)
        self.assertTrue(all(self.receiver.delivered(p) for p in pay_ids))
        self.assertGreaterEqual(self.bus.metric("paybus_notify_backlog"), 1)
        self.receiver.failing = False
        deadline = time.time() + 20
        while time.time() < deadline and not self.receiver.answered_ok.issuperset(pay_ids):
            time.sleep(0.05)
        self.assertEqual(set(pay_ids) - self.receiver.answered_ok, set())
        for pay_id in pay_ids:
            attempts = self.receiver.delivered(pay_id)
            self.assertGreaterEqual(len(attempts), 2)  # failed at least once, then delivered
            self.assertEqual(len({a[0]["X-Paybus-Event"] for a in attempts}), 1)
            self.assertEqual(len({a[0]["X-Paybus-Nonce"] for a in attempts}), len(attempts))
        # Each attempt is counted by what came of it.
        self.bus.wait_metric("paybus_notify_backlog", lambda v: v == 0)
        attempts = sum(len(self.receiver.delivered(pay_id)) for pay_id in pay_ids)
        counted = {result: self.bus.metric(f'paybus_webhook_attempts_total{{result="{result}"}}')
                   for result in ("delivered", "retried", "given_up", "untargeted")}
        self.assertEqual(counted, {"delivered": 10, "retried": attempts - 10, "given_up": 0, "untargeted": 0})

    def hanging_endpoint(self):
        """A merchant endpoint that accepts connections and never answers:
        each delivery to it holds a worker for notify.timeout_ms (5 s)."""
        hanging = socket.socket()
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(512)
        held = []

        def hold():
            try:
                while True:
                    held.append(hanging.accept())
            except OSError:
                pass  # closed at the end of the test

        def close():
            hanging.close()
            for connection, _ in held:
                connection.close()

        threading.Thread(target=hold, daemon=True).start()
        self.addCleanup(close)
        return f"http://127.0.0.1:{hanging.getsockname()[1]}/notify", held

    def other_merchant_waits(self, order_no):
        """Seconds until rsa-shop's webhook for a new payment arrives."""
        shop = Client("127.0.0.1", self.bus.port, merchant="rsa-shop",
                      rsa_key=os.path.join(keys_dir(), "merchant-rsa.key.pem"))
        started = time.time()
        _, created, _ = shop.pay(order_no, notify_url=self.receiver.url)
        shop.close()
        self.wait_delivered(created["pay_id"], timeout=10)
        return time.time() - started

    def test_a_hanging_merchant_endpoint_does_not_hold_up_other_merchants(self):
        # With 4 workers, "rsa-shop" once shared "demo"'s worker
        # (chosen by a hash of the merchant) and waited behind every one of them.
        hanging_url, held = self.hanging_endpoint()
        for i in range(6):
            status, body, _ = self.client.pay(f"W-5-{i}", notify_url=hanging_url)
            self.assertEqual(status, 202, body)
        deadline = time.time() + 10
        while time.time() < deadline and not held:
            time.sleep(0.05)
        self.assertTrue(held)  # demo's deliveries are hanging now
        waited = self.other_merchant_waits("W-5-shop")
        print(f"rsa-shop's webhook arrived {waited:.2f} s after its payment, "
              f"{len(held)} of demo's deliveries hanging", file=sys.stderr)
        self.assertLess(waited, 3.0)

    def test_a_hanging_merchants_backlog_does_not_hold_up_other_merchants(self):
        # More of "demo"'s webhooks due than a round of the notifier once read
        # (256, earliest first): every round read only demo's, which waited
        # for its workers, and rsa-shop's webhook, due later, was not read
        # until demo's had failed and moved behind it one by one.
        hanging_url, held = self.hanging_endpoint()
        payments = 300
        for i in range(payments):
            status, body, _ = self.client.pay(f"W-6-{i}", notify_url=hanging_url)
            self.assertEqual(status, 202, body)
        self.bus.wait_metric("paybus_notify_backlog", lambda v: v >= payments, timeout=30)
        # The backlog is counted when the webhooks are queued; the first
        # deliveries reach the endpoint a moment later (on an ASan build,
        # later still): wait for them, do not read at once.
        deadline = time.time() + 10
        while time.time() < deadline and not held:
            time.sleep(0.05)
        self.assertTrue(held)  # demo's deliveries are hanging now
        waited = self.other_merchant_waits("W-6-shop")
        print(f"rsa-shop's webhook arrived {waited:.2f} s after its payment, behind "
              f"{payments} of demo's due to a hanging endpoint", file=sys.stderr)
        self.assertLess(waited, 3.0)

    def test_two_hanging_merchants_do_not_hold_up_a_third(self):
        # Each free worker once went to the first merchant in key order with
        # room: "demo" and "other", both hanging with webhooks due again and
        # again, took every worker that freed, and "rsa-shop" waited for as
        # long as theirs were retried (25 hours). Now a freed worker goes to
        # the merchant with the fewest in flight: rsa-shop waits for one
        # attempt to time out (notify.timeout_ms, 5 s) at most.
        hanging_url, held = self.hanging_endpoint()
        other = Client("127.0.0.1", self.bus.port, merchant="other", secret="other-secret")
        for i in range(20):
            for client, prefix in ((self.client, "W-7-d"), (other, "W-7-o")):
                status, body, _ = client.pay(f"{prefix}-{i}", notify_url=hanging_url)
                self.assertEqual(status, 202, body)
        other.close()
        deadline = time.time() + 10
        while time.time() < deadline and len(held) < 4:
            time.sleep(0.05)
        self.assertGreaterEqual(len(held), 4)  # every worker holds a hanging delivery
        waited = self.other_merchant_waits("W-7-shop")
        print(f"rsa-shop's webhook arrived {waited:.2f} s after its payment, every worker "
              f"held by demo's and other's hanging endpoint", file=sys.stderr)
        self.assertLess(waited, 8.0)

    def test_webhooks_survive_a_kill_9(self):
        self.receiver.failing = True
        pay_ids = [self.client.pay(f"W-4-{i}", notify_url=self.receiver.url)[1]["pay_id"] for i in range(5)]
        deadline = time.time() + 20
        while time.time() < deadline and self.bus.metric("paybus_notify_backlog") < 5:
            time.sleep(0.1)
        self.bus.kill9()
        self.receiver.failing = False
        self.bus.start()
        for pay_id in pay_ids:
            self.wait_delivered(pay_id)

    def test_a_webhook_whose_merchant_url_was_removed_waits_and_is_listed_never_dropped(self):
        # demo's URL is configured (merchants.0.notify_url), and its endpoint fails.
        self.receiver.failing = True
        self.bus.stop()
        self.bus.sets.append(f"merchants.0.notify_url={self.receiver.url}")
        self.bus.start()
        pay_id = self.client.pay("W-6")[1]["pay_id"]  # no notify_url of its own
        deadline = time.time() + 20
        while time.time() < deadline and not self.receiver.delivered(pay_id):
            time.sleep(0.05)
        self.assertTrue(self.receiver.delivered(pay_id))
        # The URL is removed from the configuration: the webhook has nowhere to go.
        self.bus.stop()
        self.bus.sets.pop()
        self.bus.start()
        self.bus.wait_metric('paybus_webhook_attempts_total{result="untargeted"}',
                             lambda v: v is not None and v >= 1)
        # The gauge is set at the end of the round that counted it: waited for, not read at once.
        self.assertEqual(self.bus.wait_metric("paybus_notify_backlog", lambda v: v == 1), 1)
        self.assertIn("have no URL to go to", self.bus.log())
        self.bus.stop()
        listed = subprocess.run([os.path.join(BUILD, "tools", "paybus-replay"), "--store",
                                 os.path.join(self.bus.dir, "data", "store"), "webhooks"],
                                capture_output=True, text=True, timeout=30)
        self.assertEqual(listed.returncode, 0, listed.stderr)
        lines = [json.loads(line) for line in listed.stdout.splitlines()]
        self.assertEqual([(w["pay_id"], w["merchant_id"], w["notify_url"]) for w in lines],
                         [(pay_id, "demo", None)])
        # Configured again, it is delivered.
        self.receiver.failing = False
        self.bus.sets.append(f"merchants.0.notify_url={self.receiver.url}")
        self.bus.start()
        self.wait_delivered(pay_id, timeout=30)

    def test_the_demo_receiver_takes_signed_webhooks_and_refuses_forged_ones(self):
        # scripts/webhook-receiver, the demo merchant's endpoint.
        port = free_port()
        script = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                              "scripts", "webhook-receiver")
        receiver = subprocess.Popen([script, "--listen", f"127.0.0.1:{port}", "--secret", "demo-secret"],
                                    stdout=subprocess.PIPE, text=True)
        try:
            self.assertIn("webhook receiver on", receiver.stdout.readline())
            listed = lambda: json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/webhooks").read())
            _, created, _ = self.client.pay("W-D-1", amount=777, notify_url=f"http://127.0.0.1:{port}/notify")
            pay_id = created["pay_id"]
            deadline = time.time() + 20
            while not listed() and time.time() < deadline:
                time.sleep(0.1)
            self.assertEqual([(e["pay_id"], e["amount"], e["type"]) for e in listed()],
                             [(pay_id, 777, "payment.succeeded")])
            self.assertIn(f"pay_id={pay_id} order=W-D-1 777 CNY", receiver.stdout.readline())
            # The same event signed with another secret: refused, not listed.
            body = json.dumps(listed()[0]).encode()
            forged = Client("127.0.0.1", port, secret="not-the-secret").headers("POST", "/notify", body)
            request = urllib.request.Request(f"http://127.0.0.1:{port}/notify", data=body, method="POST",
                                             headers=forged)
            with self.assertRaises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request)
            self.assertEqual(refused.exception.code, 401)
            self.assertEqual(len(listed()), 1)
        finally:
            receiver.terminate()
            receiver.wait(10)


if __name__ == "__main__":
    unittest.main(verbosity=2)
