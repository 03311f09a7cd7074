"""End to end: payments paid through two real channel simulators (RSA both ways), results
joined and written to PostgreSQL, notifications, queries, outages (API.md 4 and 6)."""

import asyncio
import base64
import contextlib
import hashlib
import http.server
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BUILD, Bus, ChannelSim, PgCluster, keys_dir, make_temp_dir, raw_http  # noqa: E402
from paybus_client import Client  # noqa: E402


FINAL = ("SUCCEEDED", "FAILED", "CLOSED")


def wait_status(test, client, pay_id, statuses=FINAL, timeout=30):
    """The payment once its status is one of `statuses`; fails `test` after `timeout` s."""
    deadline = time.time() + timeout
    body = None
    while time.time() < deadline:
        status, body, _ = client.request("GET", f"/v1/payments/{pay_id}")
        if status == 200 and body["status"] in statuses:
            return body
        time.sleep(0.1)
    test.fail(f"payment {pay_id} stayed {body}")


def notification(channel, key_owner, body):
    """A raw `POST /v1/channels/{channel}/notify` request for `body`, signed as section 4 says
    with `key_owner`'s private key (the channel's own, or another's to forge one)."""
    target = f"/v1/channels/{channel}/notify"
    timestamp, nonce = str(int(time.time())), base64.urlsafe_b64encode(os.urandom(15)).decode()
    canonical = "\n".join(["POST", target, timestamp, nonce, hashlib.sha256(body).hexdigest()])
    raw = subprocess.run(["openssl", "dgst", "-sha256", "-sign", f"{keys_dir()}/{key_owner}.key.pem"],
                         input=canonical.encode(), capture_output=True, check=True).stdout
    signature = "rsa-sha256=" + base64.b64encode(raw).decode()
    return (f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"X-Paybus-Channel: {channel}\r\nX-Paybus-Timestamp: {timestamp}\r\n"
            f"X-Paybus-Nonce: {nonce}\r\nX-Paybus-Signature: {signature}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


class TwoChannels(unittest.TestCase):
    """A throwaway PostgreSQL, simulators sim-a and sim-b, and a bus paying through both with
    the class's `weights` and `sets`, for the whole class."""
    weights = (50, 50)
    sets = None

    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        cls.pg.start()
        cls.sim_a = ChannelSim("sim-a").start()
        cls.sim_b = ChannelSim("sim-b").start()
        cls.bus = Bus(cls.pg.url, channels={"sim-a": (cls.sim_a.url, cls.weights[0]),
                                            "sim-b": (cls.sim_b.url, cls.weights[1])},
                      sets=cls.sets).start()
        cls.client = Client("127.0.0.1", cls.bus.port)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.bus.destroy()
        cls.sim_a.destroy()
        cls.sim_b.destroy()
        cls.pg.destroy()


class ThroughChannels(TwoChannels):

    def setUp(self):
        normal = {"failed_ratio": 0, "accepted_ratio": 0, "timeout_ratio": 0, "notify_delay_ms": 0,
                  "notify_loss_ratio": 0, "notify_duplicate_ratio": 0, "down": False,
                  "latency_min_ms": 0, "latency_max_ms": 0}
        self.sim_a.mode(normal)
        self.sim_b.mode(normal)

    def wait_status(self, pay_id, statuses=FINAL, timeout=30):
        return wait_status(self, self.client, pay_id, statuses, timeout)

    def db_result(self, pay_id, timeout=20):
        rows = self.pg.wait_rows("SELECT status, channel_id, channel_txn_id, amount, source "
                                 f"FROM payment_results WHERE pay_id = '{pay_id}'", timeout)
        if not rows:
            self.fail(f"no payment_results row for {pay_id}")
        return rows

    def pay(self, order_no, **fields):
        status, body, _ = self.client.pay(order_no, **fields)
        self.assertEqual(status, 202, body)
        return body["pay_id"]

    def test_a_payment_succeeds_through_the_named_channel(self):
        pay_id = self.pay("C-1", amount=1234, channel="sim-a")
        final = self.wait_status(pay_id)
        self.assertEqual(final["status"], "SUCCEEDED")
        self.assertEqual(final["channel"], "sim-a")
        self.assertTrue(final["channel_txn_id"].startswith("sim-a-"))
        self.assertIn("finished_at", final)
        rows = self.db_result(pay_id)
        self.assertEqual(rows, [["SUCCEEDED", "sim-a", final["channel_txn_id"], "1234", "channel"]])
        self.assertEqual(self.pg.scalar(f"SELECT count(*) FROM payment_orders WHERE pay_id = '{pay_id}'"), "1")
        self.assertEqual(self.sim_a.payments()[pay_id]["pay_requests"], 1)
        self.assertNotIn(pay_id, self.sim_b.payments())

    def test_signatures_are_counted_on_both_sides_with_their_cpu_time(self):
        bus_before = (self.bus.metric("paybus_private_key_operations_total"),
                      self.bus.metric("paybus_private_key_cpu_seconds_total"))
        sim_before = self.sim_a.usage()
        pay_id = self.pay("C-usage", channel="sim-a")
        self.assertEqual(self.wait_status(pay_id)["status"], "SUCCEEDED")
        bus_after = (self.bus.metric("paybus_private_key_operations_total"),
                     self.bus.metric("paybus_private_key_cpu_seconds_total"))
        sim_after = self.sim_a.usage()
        # The bus signed the request, the simulator its answer; each took
        # some CPU, and less than a second.
        self.assertGreaterEqual(bus_after[0] - bus_before[0], 1)
        self.assertGreater(bus_after[1] - bus_before[1], 0)
        self.assertLess(bus_after[1] - bus_before[1], 1)
        self.assertGreaterEqual(sim_after["private_key_operations"] - sim_before["private_key_operations"], 1)
        self.assertGreater(sim_after["private_key_cpu_seconds"] - sim_before["private_key_cpu_seconds"], 0)

    def test_a_declined_payment_is_failed(self):
        self.sim_b.mode({"failed_ratio": 1})
        pay_id = self.pay("C-2", channel="sim-b")
        self.assertEqual(self.wait_status(pay_id)["status"], "FAILED")
        self.assertEqual(self.db_result(pay_id)[0][0], "FAILED")

    def test_accepted_then_notified(self):
        self.sim_a.mode({"accepted_ratio": 1, "notify_delay_ms": 200})
        pay_id = self.pay("C-3", channel="sim-a")
        self.assertEqual(self.wait_status(pay_id)["status"], "SUCCEEDED")
        self.assertEqual(self.db_result(pay_id)[0][4], "notify")

    def test_a_lost_notification_is_resolved_by_query(self):
        self.sim_a.mode({"accepted_ratio": 1, "notify_loss_ratio": 1})
        pay_id = self.pay("C-4", channel="sim-a")
        self.assertEqual(self.wait_status(pay_id)["status"], "SUCCEEDED")
        self.assertEqual(self.db_result(pay_id)[0][4], "query")

    def test_duplicate_notifications_change_nothing(self):
        self.sim_b.mode({"accepted_ratio": 1, "notify_duplicate_ratio": 1})
        before = self.bus.metric("paybus_channel_notifications_total") or 0
        pay_id = self.pay("C-5", channel="sim-b")
        self.assertEqual(self.wait_status(pay_id)["status"], "SUCCEEDED")
        # Both copies taken (the second may come well after the first under load) ...
        self.bus.wait_metric("paybus_channel_notifications_total", lambda v: v >= before + 2, timeout=15)
        time.sleep(0.5)
        # ... and still one result.
        self.assertEqual(len(self.db_result(pay_id)), 1)
        self.assertEqual(self.client.request("GET", f"/v1/payments/{pay_id}")[1]["status"], "SUCCEEDED")

    def test_a_timeout_is_queried_and_never_sent_elsewhere(self):
        self.sim_a.mode({"timeout_ratio": 1})
        pay_id = self.pay("C-6", channel="sim-a")
        final = self.wait_status(pay_id)
        self.assertEqual(final["status"], "SUCCEEDED")
        self.assertEqual(self.db_result(pay_id)[0][4], "query")
        self.assertEqual(self.sim_a.payments()[pay_id]["pay_requests"], 1)
        self.assertNotIn(pay_id, self.sim_b.payments())

    def test_one_channel_down_traffic_moves_and_no_pay_id_reaches_both(self):
        self.sim_a.set_down(True)
        pay_ids = [self.pay(f"C-7-{i}") for i in range(20)]
        for pay_id in pay_ids:
            self.assertEqual(self.wait_status(pay_id)["status"], "SUCCEEDED")
        self.sim_a.set_down(False)
        a, b = self.sim_a.payments(), self.sim_b.payments()
        for pay_id in pay_ids:
            self.assertTrue((pay_id in a) != (pay_id in b), pay_id)
            self.assertIn(pay_id, b)
        self.assertGreaterEqual(self.bus.metric('paybus_channel_requests_total'), 1)
        self.assertIsNotNone(self.bus.metric('paybus_channel_breaker_state'))
        self.assertGreaterEqual(self.bus.metric('paybus_join_latency_seconds_count'), 20)

    def test_routing_spreads_by_weight(self):
        time.sleep(0.5)  # a breaker opened by an earlier test half-opens
        pay_ids = [self.pay(f"C-8-{i}") for i in range(60)]
        for pay_id in pay_ids:
            self.wait_status(pay_id)
        a, b = self.sim_a.payments(), self.sim_b.payments()
        on_a = sum(1 for p in pay_ids if p in a)
        on_b = sum(1 for p in pay_ids if p in b)
        self.assertEqual(on_a + on_b, 60)
        self.assertGreater(on_a, 10)   # 50/50 weights: 10..50 holds with overwhelming probability
        self.assertGreater(on_b, 10)

    def test_a_second_different_result_before_its_order_is_kept_apart(self):
        # A pay_id this store holds no order for (API.md section 4: such a
        # result is kept and joined when the order comes); then another channel
        # says it paid the same pay_id. The second was dropped without a word.
        pay_id = "9" * 24
        conflicting = self.bus.metric("paybus_results_conflicting_total")
        for channel in ("sim-a", "sim-b"):
            body = json.dumps({"pay_id": pay_id, "channel_txn_id": f"{channel}-early", "status": "SUCCEEDED",
                               "amount": 1999, "paid_at": "2026-11-22T00:00:00.000Z"}).encode()
            answer = raw_http(self.bus.port, notification(channel, channel, body))
            self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer[:200])
        self.assertEqual(self.bus.metric("paybus_results_conflicting_total"), conflicting + 1)
        self.assertIn("sim-b-early", self.bus.log())

    def test_a_notification_with_a_nul_in_its_txn_id_is_refused_and_changes_nothing(self):
        self.sim_b.mode({"accepted_ratio": 1, "notify_loss_ratio": 1})
        pay_id = self.pay("C-12", channel="sim-b")
        body = json.dumps({"pay_id": pay_id, "channel_txn_id": "T\u0000X", "status": "SUCCEEDED",
                           "amount": 1999, "paid_at": "2026-11-22T00:00:00.000Z"}).encode()
        answer = raw_http(self.bus.port, notification("sim-b", "sim-b", body))
        self.assertTrue(answer.startswith(b"HTTP/1.1 400"), answer[:200])
        self.assertIn(b"channel_txn_id", answer)
        self.assertEqual(self.client.request("GET", f"/v1/payments/{pay_id}")[1]["status"], "PROCESSING")
        # The sound answer to the bus's query settles it.
        self.assertEqual(self.wait_status(pay_id)["status"], "SUCCEEDED")
        self.assertEqual(self.db_result(pay_id)[0][2], self.sim_b.payments()[pay_id]["channel_txn_id"])

    def test_a_notification_paid_in_year_0_is_kept_at_its_arrival_time_and_reaches_the_database(self):
        # PostgreSQL refuses year 0: kept as sent, the row would have held back every row after it.
        self.sim_b.mode({"accepted_ratio": 1, "notify_loss_ratio": 1})
        pay_id = self.pay("C-13", channel="sim-b")
        body = json.dumps({"pay_id": pay_id, "channel_txn_id": "sim-b-13", "status": "SUCCEEDED",
                           "amount": 1999, "paid_at": "0000-01-01T00:00:00Z"}).encode()
        sent = time.time()
        answer = raw_http(self.bus.port, notification("sim-b", "sim-b", body))
        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer[:200])
        self.assertEqual(self.db_result(pay_id)[0][:3], ["SUCCEEDED", "sim-b", "sim-b-13"])
        finished = self.pg.query("SELECT extract(epoch FROM finished_at) FROM payment_results "
                                 f"WHERE pay_id = '{pay_id}'")[0][0]
        self.assertLess(abs(float(finished) - sent), 60)
        later = self.pay("C-14", channel="sim-a")
        self.assertEqual(self.wait_status(later)["status"], "SUCCEEDED")
        self.assertEqual(self.db_result(later)[0][0], "SUCCEEDED")

    def test_a_notification_from_a_channel_the_payment_was_not_sent_to_is_kept_apart(self):
        self.sim_b.mode({"accepted_ratio": 1, "notify_loss_ratio": 1})
        conflicting = self.bus.metric("paybus_results_conflicting_total")
        pay_id = self.pay("C-11", channel="sim-b")
        deadline = time.time() + 10
        while pay_id not in self.sim_b.payments() and time.time() < deadline:
            time.sleep(0.05)
        # sim-a, correctly signed, says it paid a payment sent to sim-b.
        body = json.dumps({"pay_id": pay_id, "channel_txn_id": "sim-a-x", "status": "SUCCEEDED",
                           "amount": 1999, "paid_at": "2026-11-22T00:00:00.000Z"}).encode()
        answer = raw_http(self.bus.port, notification("sim-a", "sim-a", body))
        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer[:80])
        self.assertEqual(self.client.request("GET", f"/v1/payments/{pay_id}")[1]["status"], "PROCESSING")
        self.assertEqual(self.bus.metric("paybus_results_conflicting_total"), conflicting + 1)
        self.assertIn(f"payment {pay_id}: a SUCCEEDED result from sim-a", self.bus.log())
        # The payment goes on at sim-b: its query (after 3 s) finds it SUCCEEDED there.
        final = self.wait_status(pay_id)
        self.assertEqual((final["status"], final["channel"], final["channel_txn_id"]),
                         ("SUCCEEDED", "sim-b", self.sim_b.payments()[pay_id]["channel_txn_id"]))
        self.assertEqual(self.db_result(pay_id)[0][:2], ["SUCCEEDED", "sim-b"])

    def test_a_forged_notification_is_refused_and_changes_nothing(self):
        self.sim_a.mode({"accepted_ratio": 1, "notify_loss_ratio": 1, "notify_delay_ms": 0})
        self.sim_a.mode({"accepted_ratio": 0})
        pay_id = self.pay("C-9", channel="sim-b")
        self.wait_status(pay_id)
        body = json.dumps({"pay_id": pay_id, "channel_txn_id": "forged", "status": "FAILED",
                           "amount": 1999, "paid_at": "2026-11-22T00:00:00.000Z"}).encode()
        target = "/v1/channels/sim-b/notify"
        # Signed with the wrong key (sim-a's), as sim-b.
        answer = raw_http(self.bus.port, notification("sim-b", "sim-a", body))
        self.assertTrue(answer.startswith(b"HTTP/1.1 401"), answer[:80])
        self.assertEqual(self.wait_status(pay_id)["status"], "SUCCEEDED")
        self.assertEqual(self.db_result(pay_id)[0][0], "SUCCEEDED")
        unsigned = raw_http(self.bus.port, (f"POST {target} HTTP/1.1\r\nContent-Length: {len(body)}\r\n"
                                            "Connection: close\r\n\r\n").encode() + body)
        self.assertTrue(unsigned.startswith(b"HTTP/1.1 401"))


class OrderRepair(unittest.TestCase):
    def test_a_payment_no_channel_took_is_closed_when_it_expires(self):
        pg = PgCluster()
        pg.start()
        sim = ChannelSim("sim-a").start()
        bus = Bus(pg.url, channels={"sim-a": (sim.url, 100)}, sets=["payments.min_expire_seconds=1"]).start()
        try:
            sim.set_down(True)
            client = Client("127.0.0.1", bus.port)
            status, created, _ = client.pay("X-1", channel="sim-a", expire_seconds=2)
            self.assertEqual(status, 202)
            pay_id = created["pay_id"]
            self.assertEqual(client.request("GET", f"/v1/payments/{pay_id}")[1]["status"], "PROCESSING")
            deadline = time.time() + 20
            final = None
            while time.time() < deadline:
                final = client.request("GET", f"/v1/payments/{pay_id}")[1]
                if final["status"] != "PROCESSING":
                    break
                time.sleep(0.2)
            self.assertEqual(final["status"], "CLOSED")
            sim.set_down(False)
            self.assertNotIn(pay_id, sim.payments())
            deadline = time.time() + 20
            rows = []
            while time.time() < deadline and not rows:
                rows = pg.query(f"SELECT status, source FROM payment_results WHERE pay_id = '{pay_id}'")
                time.sleep(0.1)
            self.assertEqual(rows, [["CLOSED", "query"]])
            # The channel says, signed, that it took the money after all: kept apart and
            # reported, never applied (a final status never changes).
            late = json.dumps({"pay_id": pay_id, "channel_txn_id": "late-1", "status": "SUCCEEDED",
                               "amount": 1999, "paid_at": "2026-11-22T00:00:00.000Z"}).encode()
            for _ in range(2):  # the second is a duplicate of the first
                answer = raw_http(bus.port, notification("sim-a", "sim-a", late))
                self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer[:80])
                self.assertIn(b'"received":true', answer.replace(b" ", b""))
            self.assertEqual(client.request("GET", f"/v1/payments/{pay_id}")[1]["status"], "CLOSED")
            self.assertEqual(bus.metric("paybus_results_conflicting_total"), 1)
            self.assertIn(f"payment {pay_id}: a SUCCEEDED result from sim-a", bus.log())
            time.sleep(0.5)
            self.assertEqual(pg.query(f"SELECT status FROM payment_results WHERE pay_id = '{pay_id}'"),
                             [["CLOSED"]])
            client.close()
            # An operator finds it in the stopped bus's store, and the store is sound.
            self.assertEqual(bus.stop(), 0)
            replay = [os.path.join(BUILD, "tools", "paybus-replay"), "--store", os.path.join(bus.dir, "data", "store")]
            shown = json.loads(subprocess.run(replay + ["show", pay_id], capture_output=True, text=True,
                                              check=True).stdout)
            self.assertEqual(shown["status"], "CLOSED")
            self.assertEqual([(c["status"], c["channel_id"], c["channel_txn_id"], c["source"])
                              for c in shown["conflicting_results"]], [("SUCCEEDED", "sim-a", "late-1", "notify")])
            verify = subprocess.run(replay + ["verify"], capture_output=True, text=True)
            self.assertEqual(verify.returncode, 0, verify.stdout)
        finally:
            bus.destroy()
            sim.destroy()
            pg.destroy()

    def test_a_payment_that_expired_unsent_is_closed_not_paid_when_a_channel_appears(self):
        pg = PgCluster()
        pg.start()
        sim = ChannelSim("sim-a").start()
        # Accepted while the bus has no channel: it waits in the store, never routed.
        bus = Bus(pg.url, channels={}, sets=["payments.min_expire_seconds=1"]).start()
        try:
            client = Client("127.0.0.1", bus.port)
            expiring = client.pay("X-2", expire_seconds=1)[1]["pay_id"]
            lasting = client.pay("X-3", expire_seconds=900)[1]["pay_id"]
            client.close()
            self.assertEqual(bus.stop(), 0)
            time.sleep(1.5)  # X-2's time is up
            bus = Bus(pg.url, data_dir=bus.dir, channels={"sim-a": (sim.url, 100)}).start()
            client = Client("127.0.0.1", bus.port)
            lasting_final = wait_status(self, client, lasting)
            expiring_final = wait_status(self, client, expiring)
            client.close()
            self.assertEqual(lasting_final["status"], "SUCCEEDED")
            self.assertEqual((expiring_final["status"], expiring_final["channel"]), ("CLOSED", None))
            self.assertEqual(sorted(sim.payments()), [lasting])  # the expired one never sent
            self.assertEqual(pg.wait_rows(f"SELECT status, source FROM payment_results WHERE pay_id = '{expiring}'"),
                             [["CLOSED", "query"]])
        finally:
            bus.destroy()
            sim.destroy()
            pg.destroy()


class LateChannel(TwoChannels):
    """A channel whose queue is behind: a pay request times out at the bus (timeout_ms 1000)
    and is taken later, while a query meanwhile finds nothing (the simulator's pay_delay_ms)."""
    # Routed to sim-a all but once in a thousand; sim-a's NOT_FOUND believed 4 s after a send.
    weights = (1000, 1)
    sets = ["channels.0.settle_ms=4000"]

    def pay_routed(self, prefix, count):
        pay_ids = []
        for i in range(count):
            status, body, _ = self.client.pay(f"{prefix}-{i}")
            self.assertEqual(status, 202, body)
            pay_ids.append(body["pay_id"])
        return pay_ids

    def test_a_not_found_before_the_settle_time_sends_nothing_elsewhere(self):
        # Taken 2.5 s after it arrives: the bus gave up at 1 s and asked at 1.5 s (NOT_FOUND).
        self.sim_a.mode({"pay_delay_ms": 2500})
        sent = time.time()
        pay_ids = self.pay_routed("L-1", 3)
        for pay_id in pay_ids:
            self.assertEqual(wait_status(self, self.client, pay_id)["status"], "SUCCEEDED")
        time.sleep(max(0.0, sent + 3.5 - time.time()))  # every held request taken by now
        a, b = self.sim_a.payments(), self.sim_b.payments()
        for pay_id in pay_ids:
            self.assertTrue((pay_id in a) != (pay_id in b), f"{pay_id} reached both channels")
        through_a = [pay_id for pay_id in pay_ids if pay_id in a]
        self.assertTrue(through_a)
        for pay_id in through_a:
            self.assertEqual(a[pay_id]["pay_requests"], 1)
            final = self.client.request("GET", f"/v1/payments/{pay_id}")[1]
            self.assertEqual((final["channel"], final["channel_txn_id"]), ("sim-a", a[pay_id]["channel_txn_id"]))

    def test_a_not_found_after_the_settle_time_sends_the_payment_elsewhere(self):
        # The request is still in sim-a's queue after the settle time: the bus believes the
        # NOT_FOUND then (what a channel's own timestamp window bounds for real) and pays via sim-b.
        self.sim_a.mode({"pay_delay_ms": 60000})
        pay_ids = self.pay_routed("L-2", 2)
        started = time.time()
        for pay_id in pay_ids:
            final = wait_status(self, self.client, pay_id)
            self.assertEqual((final["status"], final["channel"]), ("SUCCEEDED", "sim-b"))
        self.assertGreaterEqual(time.time() - started, 3.5)  # not before the settle time
        self.assertTrue(all(pay_id not in self.sim_a.payments() for pay_id in pay_ids))
        self.assertTrue(all(pay_id in self.sim_b.payments() for pay_id in pay_ids))


@contextlib.contextmanager
def bus_with_one_channel(sets=None):
    """A throwaway PostgreSQL, one simulator (sim-a) and a bus paying through it."""
    pg = PgCluster()
    pg.start()
    sim = ChannelSim("sim-a").start()
    bus = None
    try:
        bus = Bus(pg.url, channels={"sim-a": (sim.url, 100)}, sets=sets).start()
        yield bus, sim
    finally:
        if bus is not None:
            bus.destroy()
        sim.destroy()
        pg.destroy()


def wait_all_succeeded(client, pay_ids, timeout, each_round=lambda: None, pause=0.2):
    """The pay_ids still not SUCCEEDED after `timeout` seconds (empty: all did)."""
    deadline = time.time() + timeout
    pending = set(pay_ids)
    while pending and time.time() < deadline:
        for pay_id in list(pending):
            if client.request("GET", f"/v1/payments/{pay_id}")[1]["status"] == "SUCCEEDED":
                pending.discard(pay_id)
        each_round()
        time.sleep(pause)
    return pending


class AmountMismatch(unittest.TestCase):
    def test_a_notified_amount_other_than_the_order_is_flagged_and_never_succeeds(self):
        with bus_with_one_channel() as (bus, sim):
            pg_url = bus.database_url
            sim.mode({"accepted_ratio": 1, "notify_loss_ratio": 1})
            client = Client("127.0.0.1", bus.port)
            paid = time.time()
            status, created, _ = client.pay("M-1", channel="sim-a", amount=1999)
            self.assertEqual(status, 202, created)
            pay_id = created["pay_id"]
            deadline = time.time() + 10
            while pay_id not in sim.payments() and time.time() < deadline:
                time.sleep(0.05)
            txn = sim.payments()[pay_id]["channel_txn_id"]
            body = json.dumps({"pay_id": pay_id, "channel_txn_id": txn, "status": "SUCCEEDED",
                               "amount": 1000, "paid_at": "2026-11-22T00:00:00.000Z"}).encode()
            answer = raw_http(bus.port, notification("sim-a", "sim-a", body))
            self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer[:80])
            self.assertEqual(client.request("GET", f"/v1/payments/{pay_id}")[1]["status"], "PROCESSING")
            self.assertEqual(bus.metric("paybus_results_flagged_total"), 1)
            # The bus queries an ACCEPTED payment after 3 s; the channel says SUCCEEDED with no
            # amount. That must not settle which amount was paid.
            time.sleep(max(0.0, paid + 4.5 - time.time()))
            self.assertEqual(client.request("GET", f"/v1/payments/{pay_id}")[1]["status"], "PROCESSING")
            bus.wait_metric("paybus_results_conflicting_total", lambda v: v == 1, timeout=15)
            rows = subprocess.run(["psql", pg_url, "-XtA", "-c",
                                   f"SELECT count(*) FROM payment_results WHERE pay_id = '{pay_id}'"],
                                  capture_output=True, text=True, check=True).stdout.strip()
            self.assertEqual(rows, "0")
            client.close()
            self.assertEqual(bus.stop(), 0)
            replay = [os.path.join(BUILD, "tools", "paybus-replay"), "--store", os.path.join(bus.dir, "data", "store")]
            shown = json.loads(subprocess.run(replay + ["show", pay_id], capture_output=True, text=True,
                                              check=True).stdout)
            self.assertEqual((shown["status"], shown["result"]["flagged"], shown["result"]["amount"]),
                             ("PROCESSING", True, 1000))
            self.assertEqual([(c["status"], c["amount"], c["source"]) for c in shown["conflicting_results"]],
                             [("SUCCEEDED", 1999, "query")])
            verify = subprocess.run(replay + ["verify"], capture_output=True, text=True)
            self.assertEqual(verify.returncode, 0, verify.stdout)
            # After a restart the bus no longer drives it: nothing asks the channel again.
            bus.start()
            time.sleep(1.5)
            self.assertFalse(bus.metric('paybus_channel_requests_total{channel="sim-a",outcome="SUCCEEDED"}'))
            self.assertEqual(bus.metric("paybus_payments_driving"), 0)
            with contextlib.closing(Client("127.0.0.1", bus.port)) as again:
                self.assertEqual(again.request("GET", f"/v1/payments/{pay_id}")[1]["status"], "PROCESSING")


class BoundedMemory(unittest.TestCase):
    def test_payments_beyond_the_memory_cap_wait_in_the_store_and_all_finish(self):
        with bus_with_one_channel(sets=["payments.max_driving_in_memory=4"]) as (bus, sim):
            sim.mode({"latency_min_ms": 20})
            client = Client("127.0.0.1", bus.port)
            pay_ids = [client.pay(f"M-{i}")[1]["pay_id"] for i in range(30)]
            self.assertLessEqual(bus.metric("paybus_payments_driving"), 4)
            pending = wait_all_succeeded(
                client, pay_ids, 40,
                each_round=lambda: self.assertLessEqual(bus.metric("paybus_payments_driving"), 4))
            self.assertEqual(pending, set())
            self.assertEqual({p: sim.payments()[p]["pay_requests"] for p in pay_ids}, {p: 1 for p in pay_ids})
            client.close()


class QueuedRequests(unittest.TestCase):
    def test_requests_beyond_the_slots_wait_signed_and_are_each_sent_once(self):
        # 4 slots (channels.concurrency), 8 requests outstanding: 8 payments
        # at 100 ms each go in two rounds. The second round waits signed in
        # the channel client and starts as the first frees its slots: each
        # payment is sent once and answered SUCCEEDED within its 1 s timeout
        # (a request timed out while it waited would count UNKNOWN and be
        # settled by a query). Counted, not timed, so a loaded host cannot
        # fail it.
        with bus_with_one_channel() as (bus, sim):
            sim.mode({"latency_min_ms": 100})
            client = Client("127.0.0.1", bus.port)
            pay_ids = [client.pay(f"Q-{i}")[1]["pay_id"] for i in range(8)]
            pending = wait_all_succeeded(client, pay_ids, 30, pause=0.02)
            self.assertEqual(pending, set(), bus.log()[-6000:])
            self.assertEqual({p: sim.payments()[p]["pay_requests"] for p in pay_ids}, {p: 1 for p in pay_ids})
            self.assertEqual(bus.metric('paybus_channel_requests_total{channel="sim-a",outcome="SUCCEEDED"}'), 8)
            self.assertFalse(bus.metric('paybus_channel_requests_total{channel="sim-a",outcome="UNKNOWN"}'))
            client.close()


class MalformedChannel:
    """A channel on 127.0.0.1 that signs its answers correctly (sim-a's key)
    but answers every request with the same body (of the wrong shape, or an
    error), or with `body(pay_id)` if it is a function, and HTTP status `code`."""

    def __init__(self, body, code=200):
        self.body = body
        self.code = code
        self.requests = []
        channel = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                request = self.rfile.read(length)
                channel.requests.append((self.command, self.path))
                body = channel.body
                if callable(body):
                    pay_id = json.loads(request)["pay_id"] if request else self.path.rsplit("/", 1)[1]
                    body = body(pay_id)
                timestamp = str(int(time.time()))
                nonce = "n" + os.urandom(12).hex()
                canonical = "\n".join([self.command, self.path, timestamp, nonce,
                                        hashlib.sha256(body).hexdigest()])
                signature = subprocess.run(
                    ["openssl", "dgst", "-sha256", "-sign", os.path.join(keys_dir(), "sim-a.key.pem")],
                    input=canonical.encode(), capture_output=True, check=True).stdout
                self.send_response(channel.code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Paybus-Channel", "sim-a")
                self.send_header("X-Paybus-Timestamp", timestamp)
                self.send_header("X-Paybus-Nonce", nonce)
                self.send_header("X-Paybus-Signature", "rsa-sha256=" + base64.b64encode(signature).decode())
                self.end_headers()
                self.wfile.write(body)

            do_POST = answer
            do_GET = answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def destroy(self):
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def beside_a_sound_channel(channel, weights=(100, 100), sets=None):
    """A throwaway PostgreSQL, a real simulator sim-b, and a bus (with `sets`) paying through
    `channel` (as sim-a) and sim-b with `weights`; yields (pg, sim_b, bus, client), then
    destroys them all, `channel` too."""
    pg = PgCluster()
    pg.start()
    sim_b = ChannelSim("sim-b").start()
    bus = None
    try:
        bus = Bus(pg.url, sets=sets, channels={"sim-a": (channel.url, weights[0]),
                                               "sim-b": (sim_b.url, weights[1])}).start()
        with contextlib.closing(Client("127.0.0.1", bus.port)) as client:
            yield pg, sim_b, bus, client
    finally:
        if bus is not None:
            bus.destroy()
        sim_b.destroy()
        channel.destroy()
        pg.destroy()


class HostileChannel(unittest.TestCase):
    def test_a_signed_answer_of_the_wrong_shape_changes_nothing_and_crashes_nothing(self):
        # Signed, so it passes verification; pay_id a number, not a string.
        channel = MalformedChannel(b'{"pay_id": 123, "status": "SUCCEEDED", "channel_txn_id": 7}')
        pg = PgCluster()
        pg.start()
        bus = None
        try:
            bus = Bus(pg.url, channels={"sim-a": (channel.url, 100)}).start()
            client = Client("127.0.0.1", bus.port)
            pay_id = client.pay("H-1")[1]["pay_id"]
            deadline = time.time() + 15
            while time.time() < deadline and not any(m == "GET" for m, _ in channel.requests):
                time.sleep(0.1)
            # Sent once, then only asked about (the outcome is unknown).
            self.assertEqual([m for m, _ in channel.requests].count("POST"), 1, channel.requests)
            self.assertIn(("GET", f"/v1/pay/{pay_id}"), channel.requests)
            self.assertIsNone(bus.process.poll(), bus.log())
            status, body, _ = client.request("GET", f"/v1/payments/{pay_id}")
            self.assertEqual((status, body["status"]), (200, "PROCESSING"))
            # The channel records the query as it arrives; the bus counts its
            # answer a moment later, so wait for the count.
            bus.wait_metric('paybus_channel_requests_total{channel="sim-a",outcome="UNKNOWN"}',
                            lambda v: v >= 2, timeout=15)
            client.close()
        finally:
            if bus is not None:
                bus.destroy()
            channel.destroy()
            pg.destroy()


    def test_a_signed_answer_with_a_nul_in_its_txn_id_is_not_kept_and_the_database_feed_goes_on(self):
        # Signed and well formed but for the transaction id, which carries a
        # NUL: PostgreSQL refuses it in text, so a result kept with it would
        # stop every later row from reaching the database.
        channel = MalformedChannel(lambda pay_id: json.dumps(
            {"pay_id": pay_id, "status": "SUCCEEDED", "channel_txn_id": "T\u0000X"}).encode())
        with beside_a_sound_channel(channel) as (pg, _, bus, client):
            hostile = client.pay("H-2", channel="sim-a")[1]["pay_id"]
            deadline = time.time() + 15
            while time.time() < deadline and not any(m == "GET" for m, _ in channel.requests):
                time.sleep(0.1)
            self.assertIn(("GET", f"/v1/pay/{hostile}"), channel.requests)
            status, body, _ = client.request("GET", f"/v1/payments/{hostile}")
            self.assertEqual((status, body["status"]), (200, "PROCESSING"))
            # A payment after it, through a sound channel, reaches the database.
            sound = client.pay("H-3", channel="sim-b")[1]["pay_id"]
            self.assertEqual(wait_status(self, client, sound)["status"], "SUCCEEDED")
            rows = pg.wait_rows(f"SELECT status FROM payment_results WHERE pay_id = '{sound}'", 15)
            self.assertEqual(rows, [["SUCCEEDED"]], bus.log()[-2000:])
            self.assertEqual(pg.query(f"SELECT count(*) FROM payment_results WHERE pay_id = '{hostile}'"),
                             [["0"]])
            self.assertIsNone(bus.process.poll(), bus.log())


class RefusingChannel(unittest.TestCase):
    """sim-a answers every request with a signed 4xx; sim-b is a real simulator. Payments are
    routed to sim-a all but once in a thousand."""

    def pay_three(self, code, check):
        """Pays three routed payments, then `check(client, channel, sim_b, [(pay_id, routed_to)])`."""
        channel = MalformedChannel(b'{"error": {"code": "refused", "message": "no"}}', code)
        with beside_a_sound_channel(channel, weights=(1000, 1)) as (_, sim_b, _, client):
            created = [client.pay(f"F-{code}-{i}")[1] for i in range(3)]
            check(client, channel, sim_b, [(body["pay_id"], body["channel"]) for body in created])

    def test_a_signed_refusal_sends_the_payment_to_another_channel(self):
        def check(client, channel, sim_b, payments):
            for pay_id, _ in payments:
                final = wait_status(self, client, pay_id, statuses=("SUCCEEDED",), timeout=10)
                self.assertEqual(final["channel"], "sim-b")
                self.assertIn(pay_id, sim_b.payments())
            self.assertIn(("POST", "/v1/pay"), channel.requests)
        self.pay_three(400, check)

    def test_a_signed_409_is_asked_about_never_sent_elsewhere(self):
        # 409: the channel may hold the pay_id already; sending it elsewhere could pay it twice.
        def check(client, channel, sim_b, payments):
            to_a = [pay_id for pay_id, routed in payments if routed == "sim-a"]
            self.assertTrue(to_a)
            for pay_id in to_a:
                deadline = time.time() + 15
                while time.time() < deadline and ("GET", f"/v1/pay/{pay_id}") not in channel.requests:
                    time.sleep(0.1)
                self.assertIn(("GET", f"/v1/pay/{pay_id}"), channel.requests)
            time.sleep(1.0)  # a refusal would have been paid through sim-b well within this
            for pay_id in to_a:
                self.assertEqual(client.request("GET", f"/v1/payments/{pay_id}")[1]["status"], "PROCESSING")
                self.assertNotIn(pay_id, sim_b.payments())
        self.pay_three(409, check)


class ResumeAfterRestart(unittest.TestCase):
    def test_payments_in_flight_at_a_stop_are_finished_after_the_restart(self):
        pg = PgCluster()
        pg.start()
        sim = ChannelSim("sim-a").start()
        bus = Bus(pg.url, channels={"sim-a": (sim.url, 100)}).start()
        try:
            sim.mode({"accepted_ratio": 1, "notify_loss_ratio": 1})
            client = Client("127.0.0.1", bus.port)
            pay_ids = [client.pay(f"R-{i}")[1]["pay_id"] for i in range(5)]
            client.close()
            deadline = time.time() + 15  # sent and ACCEPTED; the notifications are lost
            while time.time() < deadline and not set(pay_ids) <= set(sim.payments()):
                time.sleep(0.1)
            self.assertLessEqual(set(pay_ids), set(sim.payments()))
            time.sleep(0.3)  # the ACCEPTED answers written
            bus.kill9()
            sim.mode({"accepted_ratio": 0})
            bus.start()
            client = Client("127.0.0.1", bus.port)
            deadline = time.time() + 30
            pending = set(pay_ids)
            while pending and time.time() < deadline:
                for pay_id in list(pending):
                    if client.request("GET", f"/v1/payments/{pay_id}")[1]["status"] == "SUCCEEDED":
                        pending.discard(pay_id)
                time.sleep(0.2)
            self.assertEqual(pending, set())
            for pay_id in pay_ids:
                self.assertEqual(sim.payments()[pay_id]["pay_requests"], 1)
            client.close()
        finally:
            bus.destroy()
            sim.destroy()
            pg.destroy()


def make_certificates(directory):
    """A throwaway CA and a certificate it signed for localhost and 127.0.0.1, by openssl's
    command line: (ca.pem, server.pem, server.key)."""
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-subj", "/CN=paybus-e2e-ca", "-days", "2")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost")
    with open(os.path.join(directory, "san.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "san.cnf")
    return tuple(os.path.join(directory, name) for name in ("ca.pem", "server.pem", "server.key"))


class TlsFront:
    """A channel as a bank shows it: TLS in front (Python's ssl, a real handshake with a real
    certificate), the simulator's plain HTTP behind. Counts the handshakes that completed."""

    def __init__(self, backend_port, certificate, key):
        self.backend_port = backend_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certificate, key)
        self.handshakes = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context, ssl_handshake_timeout=5),
            self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader, writer):
        self.handshakes += 1  # called only once the TLS handshake is done
        backend_reader, backend_writer = await asyncio.open_connection("127.0.0.1", self.backend_port)

        async def pipe(source, sink):
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, backend_writer), pipe(backend_reader, writer))

    def url(self):
        return f"https://localhost:{self.port}"

    def close(self):
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class ThroughTls(unittest.TestCase):
    """Channels reached over https: the certificate is verified (with the channel's
    ca_file, or else the system's trust store), and a handshake that fails sends nothing."""

    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        cls.pg.start()
        cls.tls_dir = make_temp_dir("tls")  # a private key: removed in tearDownClass
        cls.ca, certificate, key = make_certificates(cls.tls_dir)
        cls.sim_a = ChannelSim("sim-a").start()
        cls.sim_b = ChannelSim("sim-b").start()
        cls.front = TlsFront(int(cls.sim_a.url.rsplit(":", 1)[1]), certificate, key)

    @classmethod
    def tearDownClass(cls):
        cls.front.close()
        cls.sim_a.destroy()
        cls.sim_b.destroy()
        cls.pg.destroy()
        shutil.rmtree(cls.tls_dir, ignore_errors=True)

    def pay_all(self, client, prefix, count, **fields):
        pay_ids = []
        for i in range(count):
            status, body, _ = client.pay(f"{prefix}-{i}", **fields)
            self.assertEqual(status, 202, body)
            pay_ids.append(body["pay_id"])
        return pay_ids

    def test_an_https_channel_verified_with_its_ca_file_is_paid_through(self):
        bus = Bus(self.pg.url, channels={"sim-a": (self.front.url(), 100, {"ca_file": self.ca})}).start()
        client = Client("127.0.0.1", bus.port)
        try:
            handshakes = self.front.handshakes
            pay_ids = self.pay_all(client, "T-1", 3)
            for pay_id in pay_ids:
                final = wait_status(self, client, pay_id)
                self.assertEqual(final["status"], "SUCCEEDED")
                self.assertEqual(final["channel"], "sim-a")
                self.assertEqual(self.sim_a.payments()[pay_id]["pay_requests"], 1)
            self.assertGreater(self.front.handshakes, handshakes)  # it went through TLS
        finally:
            client.close()
            bus.destroy()

    def test_an_untrusted_certificate_gets_nothing_and_payments_move_on(self):
        # No ca_file: the system's trust store does not know this CA. Nearly every payment is
        # routed to sim-a first.
        bus = Bus(self.pg.url, channels={"sim-a": (self.front.url(), 100),
                                         "sim-b": (self.sim_b.url, 1)}).start()
        client = Client("127.0.0.1", bus.port)
        try:
            handshakes = self.front.handshakes
            pay_ids = self.pay_all(client, "T-2", 6)
            [named] = self.pay_all(client, "T-2-named", 1, channel="sim-a")
            for pay_id in pay_ids:
                final = wait_status(self, client, pay_id)
                self.assertEqual(final["status"], "SUCCEEDED")
                self.assertEqual(final["channel"], "sim-b")
                self.assertIn(pay_id, self.sim_b.payments())
            self.assertFalse((set(pay_ids) | {named}) & set(self.sim_a.payments()))
            self.assertEqual(self.front.handshakes, handshakes)  # the bus broke every one off
            self.assertGreaterEqual(
                bus.metric('paybus_channel_requests_total{channel="sim-a",outcome="UNAVAILABLE"}') or 0, 1)
            # The client named sim-a: that channel or none, never silently another.
            self.assertEqual(client.request("GET", f"/v1/payments/{named}")[1]["status"], "PROCESSING")
            self.assertNotIn(named, self.sim_b.payments())
        finally:
            client.close()
            bus.destroy()

if __name__ == "__main__":
    unittest.main(verbosity=2)
