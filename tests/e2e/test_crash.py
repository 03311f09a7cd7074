"""End to end: kill -9 of paybusd under load (merchants paying, a channel answering), restart,
repeat. Every 2xx-acknowledged payment survives in the local store, is paid exactly once by the
channel, and reaches PostgreSQL exactly once with its result joined.

PAYBUS_CRASH_CYCLES (default 10) and PAYBUS_CRASH_SEED (default: random, printed) control the run."""

import os
import random
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Bus, ChannelSim, PgCluster  # noqa: E402
from paybus_client import Client  # noqa: E402


class Merchant(threading.Thread):
    """Sends payments and, like a real merchant, retries each order until it is acknowledged."""

    def __init__(self, port, prefix):
        super().__init__(daemon=True)
        self.port, self.prefix = port, prefix
        self.acked = {}         # order_no -> pay_id
        self.stop_flag = False
        self.errors = []

    def run(self):
        client = Client("127.0.0.1", self.port, timeout=5)
        i = 0
        while not self.stop_flag:
            order_no = f"{self.prefix}-{i}"
            while not self.stop_flag:
                try:
                    status, body, _ = client.pay(order_no, amount=1000 + i)
                except OSError:
                    client.close()
                    time.sleep(0.02)
                    continue
                if status in (200, 202):
                    time.sleep(0.005)  # a merchant's pace: the channel must keep up
                    previous = self.acked.get(order_no)
                    if previous and previous != body["pay_id"]:
                        self.errors.append(f"{order_no} acknowledged as {previous} and {body['pay_id']}")
                    self.acked[order_no] = body["pay_id"]
                    break
                if status in (429, 503):
                    time.sleep(0.05)
                    continue
                self.errors.append(f"{order_no}: unexpected {status} {body}")
                break
            i += 1
        client.close()


class CrashConsistency(unittest.TestCase):
    def test_kill_9_under_load_loses_and_duplicates_nothing(self):
        cycles = int(os.environ.get("PAYBUS_CRASH_CYCLES", "10"))
        seed = int(os.environ.get("PAYBUS_CRASH_SEED", str(random.randrange(1 << 30))))
        print(f"crash test: {cycles} cycles, seed {seed} (rerun with PAYBUS_CRASH_SEED={seed})", flush=True)
        rng = random.Random(seed)
        pg = PgCluster()
        pg.start()
        sim = ChannelSim("sim-a", ["--latency-min-ms", "1", "--latency-max-ms", "5",
                                   "--accepted-ratio", "0.3", "--notify-delay-ms", "200"]).start()
        bus = Bus(pg.url, channels={"sim-a": (sim.url, 100)}).start()
        merchants = [Merchant(bus.port, f"K{seed}-m{n}") for n in range(4)]
        try:
            for m in merchants:
                m.start()
            for cycle in range(cycles):
                time.sleep(rng.uniform(0.2, 1.5))
                bus.kill9()
                time.sleep(rng.uniform(0.0, 0.3))
                bus.start()
            time.sleep(0.5)
            for m in merchants:
                m.stop_flag = True
            for m in merchants:
                m.join(30)
            errors = [e for m in merchants for e in m.errors]
            self.assertEqual(errors, [])
            acked = {no: pay_id for m in merchants for no, pay_id in m.acked.items()}
            self.assertGreater(len(acked), 20 * cycles, "too little load to prove anything")
            # Every acknowledged payment is in the local store with its pay_id.
            client = Client("127.0.0.1", bus.port)
            for order_no, pay_id in acked.items():
                status, body, _ = client.request("GET", f"/v1/payments?merchant_order_no={order_no}")
                self.assertEqual((status, body.get("pay_id")), (200, pay_id), order_no)
            client.close()
            # And in PostgreSQL exactly once, with nothing it should not have.
            bus.wait_metric("paybus_db_backlog", lambda v: v == 0, timeout=60)
            rows = pg.query(f"SELECT merchant_order_no, pay_id FROM payment_orders "
                            f"WHERE merchant_order_no LIKE 'K{seed}-%'")
            in_db = {}
            for order_no, pay_id in rows:
                self.assertNotIn(order_no, in_db)
                in_db[order_no] = pay_id
            for order_no, pay_id in acked.items():
                self.assertEqual(in_db.get(order_no), pay_id, order_no)
            # Rows beyond the acknowledged ones can only be orders made durable
            # just before a crash and never acknowledged (at most one per merchant per crash).
            self.assertLessEqual(len(in_db) - len(acked), len(merchants) * (cycles + 1))
            # Every payment is paid exactly once and its result joined, exactly once.
            deadline = time.time() + 120
            results = {}
            while time.time() < deadline:
                rows = pg.query("SELECT r.pay_id, r.status FROM payment_results r JOIN payment_orders o "
                                f"USING (pay_id) WHERE o.merchant_order_no LIKE 'K{seed}-%'")
                results = dict(rows)
                if len(results) >= len(in_db):
                    break
                time.sleep(0.5)
            missing = set(in_db.values()) - set(results)
            if missing:
                probe = Client("127.0.0.1", bus.port)
                paid_now = sim.payments()
                for pay_id in sorted(missing)[:5]:
                    print("missing", pay_id, probe.request("GET", f"/v1/payments/{pay_id}")[1],
                          paid_now.get(pay_id), flush=True)
                print("driving", bus.metric("paybus_payments_driving"), flush=True)
                probe.close()
            self.assertEqual(set(results), set(in_db.values()))
            self.assertEqual(set(results.values()), {"SUCCEEDED"})
            paid = sim.payments()
            for pay_id in in_db.values():
                self.assertEqual(paid[pay_id]["pay_requests"], 1, pay_id)
            orphans = pg.scalar("SELECT count(*) FROM payment_results r WHERE NOT EXISTS "
                                "(SELECT 1 FROM payment_orders o WHERE o.pay_id = r.pay_id)")
            self.assertEqual(orphans, "0")
            print(f"crash test: {cycles} kills, {len(acked)} acknowledged payments checked, "
                  f"{len(in_db)} order rows and {len(results)} result rows in the database, "
                  f"each paid once", flush=True)
        finally:
            for m in merchants:
                m.stop_flag = True
            bus.destroy()
            sim.destroy()
            pg.destroy()


if __name__ == "__main__":
    unittest.main(verbosity=2)
