"""End to end: payments keep flowing while PostgreSQL is down or hanging; the backlog drains exactly once."""

import os
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Bus, ChannelSim, PgCluster  # noqa: E402
from paybus_client import Client  # noqa: E402
from test_channels import wait_status  # noqa: E402


def postgres_pids(pg):
    with open(os.path.join(pg.dir, "data", "postmaster.pid")) as f:
        master = int(f.readline())
    children = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
    return [master] + [int(c) for c in children]


def pay_many(port, prefix, count, threads=4):
    """Sends `count` payments from several connections; returns {order_no: (status, pay_id)}."""
    results = {}
    lock = threading.Lock()

    def worker(start):
        client = Client("127.0.0.1", port)
        for i in range(start, count, threads):
            order_no = f"{prefix}-{i}"
            status, body, _ = client.pay(order_no, amount=100 + i)
            with lock:
                results[order_no] = (status, body.get("pay_id") if isinstance(body, dict) else None)
        client.close()

    workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return results


class DatabaseOutage(unittest.TestCase):
    def setUp(self):
        self.pg = PgCluster()
        self.pg.start()
        self.bus = Bus(self.pg.url).start()

    def tearDown(self):
        for pid in postgres_pids(self.pg) if os.path.exists(os.path.join(self.pg.dir, "data", "postmaster.pid")) else []:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.bus.destroy()
        self.pg.destroy()

    def assert_rows_exactly_once(self, results, prefix):
        self.bus.wait_metric("paybus_db_backlog", lambda v: v == 0, timeout=60)
        rows = self.pg.query(f"SELECT pay_id, merchant_order_no FROM payment_orders "
                             f"WHERE merchant_order_no LIKE '{prefix}-%'")
        self.assertEqual(len(rows), len(results))
        self.assertEqual({r[1]: r[0] for r in rows}, {no: r[1] for no, r in results.items()})

    def test_database_stopped_payments_accepted_then_drained_exactly_once(self):
        before = pay_many(self.bus.port, "O1-before", 20)
        self.bus.wait_metric("paybus_db_backlog", lambda v: v == 0)
        outage_started = time.time()
        self.pg.stop()
        during = pay_many(self.bus.port, "O1-during", 1000)
        self.assertEqual({s for s, _ in during.values()}, {202})
        self.bus.wait_metric("paybus_db_up", lambda v: v == 0)
        self.assertGreaterEqual(self.bus.metric("paybus_db_backlog"), 1)
        client = Client("127.0.0.1", self.bus.port)
        self.assertEqual(client.request("GET", "/readyz", sign=False)[0], 200)
        client.close()
        self.pg.start()
        outage_seconds = time.time() - outage_started
        self.bus.wait_metric("paybus_db_up", lambda v: v == 1, timeout=30)
        self.assert_rows_exactly_once(before, "O1-before")
        self.assert_rows_exactly_once(during, "O1-during")
        print(f"\nPostgreSQL stopped for {outage_seconds:.1f} s: 1000 payments accepted meanwhile, all 202; "
              f"drained {time.time() - outage_started - outage_seconds:.1f} s after it started, each row once")

    def test_database_hanging_stalls_nothing_but_the_sink(self):
        pay_many(self.bus.port, "O2-warm", 10)
        self.bus.wait_metric("paybus_db_backlog", lambda v: v == 0)
        pids = postgres_pids(self.pg)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            started = time.time()
            during = pay_many(self.bus.port, "O2-hang", 300)
            elapsed = time.time() - started
            self.assertEqual({s for s, _ in during.values()}, {202})
            # Nothing waited on the database's statement timeout (3 s here).
            self.assertLess(elapsed, 3.0, "payments stalled behind a hanging database")
            self.bus.wait_metric("paybus_db_up", lambda v: v == 0, timeout=15)
            hung_seconds = time.time() - started
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        self.bus.wait_metric("paybus_db_up", lambda v: v == 1, timeout=30)
        self.assert_rows_exactly_once(during, "O2-hang")
        print(f"\nPostgreSQL hanging (SIGSTOP) for {hung_seconds:.1f} s: 300 payments accepted in "
              f"{elapsed:.2f} s, rows each once after SIGCONT")

    def test_database_restarted_while_the_bus_is_stopped(self):
        self.pg.stop()
        first = pay_many(self.bus.port, "O3-a", 100)
        self.assertEqual(self.bus.stop(), 0)
        self.pg.start()
        self.bus.start()
        self.assert_rows_exactly_once(first, "O3-a")


class RefusedRows(unittest.TestCase):
    def wait_rows(self, pg, sql):
        rows = pg.wait_rows(sql)
        if not rows:
            self.fail(f"no rows for {sql}")
        return rows

    def test_a_row_the_database_refuses_is_kept_and_the_rows_after_it_go_on(self):
        pg = PgCluster()
        pg.start()
        sim = ChannelSim("sim-a").start()
        bus = None
        try:
            bus = Bus(pg.url, channels={"sim-a": (sim.url, 100)}).start()
            client = Client("127.0.0.1", bus.port)
            paid = client.pay("RR-0")[1]["pay_id"]
            self.wait_rows(pg, f"SELECT 1 FROM payment_results WHERE pay_id = '{paid}'")
            # The database refuses results of 42.42 (a constraint the bus does not know
            # of): that row is refused for its content, every time it is sent.
            pg.query("ALTER TABLE payment_results ADD CONSTRAINT no_4242 CHECK (amount <> 4242)")
            again = client.pay("RR-1", amount=4242)[1]["pay_id"]
            self.assertEqual(wait_status(self, client, again)["status"], "SUCCEEDED")
            later = client.pay("RR-2")[1]["pay_id"]
            self.wait_rows(pg, f"SELECT 1 FROM payment_results WHERE pay_id = '{later}'")
            self.assertEqual(bus.metric("paybus_db_rows_refused_total"), 1)
            self.assertEqual(pg.query(f"SELECT count(*) FROM payment_results WHERE pay_id = '{again}'"),
                             [["0"]])
            self.assertIn(f"refused the payment_results row of payment {again}", bus.log())
            self.assertEqual(bus.metric("paybus_db_backlog"), 1)  # kept in the store's outbox
            self.assertEqual(bus.metric("paybus_db_up"), 1)
            client.close()
            # Sent again at the next start: refused again, and nothing after it held back.
            self.assertEqual(bus.stop(), 0)
            bus.start()
            bus.wait_metric("paybus_db_rows_refused_total", lambda v: v == 1)
            client = Client("127.0.0.1", bus.port)
            last = client.pay("RR-3")[1]["pay_id"]
            self.wait_rows(pg, f"SELECT 1 FROM payment_results WHERE pay_id = '{last}'")
            client.close()
        finally:
            if bus is not None:
                bus.destroy()
            sim.destroy()
            pg.destroy()


if __name__ == "__main__":
    unittest.main(verbosity=2)
