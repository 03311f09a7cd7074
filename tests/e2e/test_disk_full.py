"""End to end: the local store's disk fills up under a running bus.

The bus's data dir lives on a small tmpfs of its own. A filler file takes
every free byte; then payments must be refused with `503 store_unavailable`
(never acknowledged and lost), `/readyz` must say so, and the store must stay
intact. When the filler is removed the bus must recover by itself: payments
are accepted again, the refused ones can be retried, and after a restart
every acknowledged payment is in the store and in PostgreSQL exactly once
(`paybus-replay verify` finds no damage)."""

import os
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BUILD, Bus, PgCluster, make_temp_dir  # noqa: E402
from paybus_client import Client  # noqa: E402

REPLAY = os.path.join(BUILD, "tools", "paybus-replay")
BENCH = os.path.join(BUILD, "tools", "paybus-bench")
TMPFS_BYTES = 96 << 20


def readyz(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as error:
        return error.code


def fill(path):
    """Writes `path` until the file system has no byte left; returns the bytes written."""
    written = 0
    chunk = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                written += f.write(chunk)
            except OSError:
                break
        for size in (65536, 4096, 512, 1):
            while True:
                try:
                    written += f.write(chunk[:size])
                except OSError:
                    break
    return written


class DiskFull(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("mounting a tmpfs needs root")
        cls.pg = PgCluster()
        cls.pg.start()

    @classmethod
    def tearDownClass(cls):
        cls.pg.destroy()

    def mount_tmpfs(self):
        mount = make_temp_dir("tmpfs")
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", mount], check=True)
        self.addCleanup(os.rmdir, mount)
        self.addCleanup(subprocess.run, ["umount", "-l", mount])
        return mount

    def test_below_the_free_space_reserve_payments_get_503_and_resume(self):
        self.fill_and_recover("reserve", min_free_bytes=4 << 20)

    def test_rocksdb_itself_out_of_space_gets_503_and_resumes(self):
        # No reserve: RocksDB's log write is the one that fails.
        self.fill_and_recover("enospc", min_free_bytes=0)

    def fill_and_recover(self, case, min_free_bytes):
        mount = self.mount_tmpfs()
        bus = Bus(self.pg.url, channels={},
                  sets=[f"node.data_dir={mount}/data", f"store.min_free_bytes={min_free_bytes}"])
        self.addCleanup(bus.destroy)
        if os.environ.get("PAYBUS_KEEP_LOG"):
            self.addCleanup(lambda: print(bus.log()[-6000:]))
        bus.start()
        client = Client("127.0.0.1", bus.port)
        acknowledged = {}
        for i in range(50):
            status, body, _ = client.pay(f"{case}-before-{i}", amount=100 + i)
            self.assertEqual(status, 202, body)
            acknowledged[f"{case}-before-{i}"] = body["pay_id"]

        filler = os.path.join(mount, "filler")
        fill(filler)
        # RocksDB preallocates its log, so without the reserve a full file system
        # is felt only once that room is used: load the bus until its store stops.
        for run in range(60):
            if bus.metric("paybus_store_up") == 0:
                break
            subprocess.run([BENCH, "--target", f"127.0.0.1:{bus.port}", "-c", "16", "--depth", "4",
                            "-d", "1", "--prefix", f"{case}{run}"], capture_output=True, check=True)
        self.assertEqual(bus.metric("paybus_store_up"), 0, "the full disk never stopped the store")
        refused = []
        for i in range(20):
            order_no = f"{case}-full-{i}"
            status, body, _ = client.pay(order_no, amount=7)
            self.assertEqual(status, 503, body)
            self.assertEqual(body["error"]["code"], "store_unavailable")
            refused.append(order_no)
        self.assertEqual(readyz(bus.port), 503)
        # A refused payment was not kept.
        status, _, _ = client.request("GET", f"/v1/payments?merchant_order_no={refused[0]}")
        self.assertEqual(status, 404)

        os.remove(filler)
        deadline = time.time() + 30
        while readyz(bus.port) != 200 and time.time() < deadline:
            time.sleep(0.1)
        self.assertEqual(readyz(bus.port), 200, bus.log()[-3000:])
        # The merchant retries what was refused, and pays on.
        for order_no in refused + [f"{case}-after-{i}" for i in range(50)]:
            status, body, _ = client.pay(order_no, amount=7 if "-full-" in order_no else 9)
            self.assertEqual(status, 202, body)
            acknowledged[order_no] = body["pay_id"]
        # Every acknowledged payment reads back with the pay_id it was acknowledged with.
        for order_no, pay_id in acknowledged.items():
            status, body, _ = client.request("GET", f"/v1/payments?merchant_order_no={order_no}")
            self.assertEqual((status, body["pay_id"]), (200, pay_id))
        client.close()

        accepted_total = bus.metric("paybus_payments_accepted_total")
        self.assertEqual(bus.stop(), 0)
        verify = subprocess.run([REPLAY, "--store", f"{mount}/data/store", "verify"],
                                capture_output=True, text=True)
        self.assertEqual(verify.returncode, 0, verify.stdout + verify.stderr)

        bus.start()
        bus.wait_metric("paybus_db_backlog", lambda v: v == 0, timeout=60)
        rows = dict(self.pg.query(
            f"SELECT merchant_order_no, pay_id FROM payment_orders WHERE merchant_order_no LIKE '%{case}%'"))
        # Every payment acknowledged by this test, with its pay_id...
        self.assertEqual({k: rows.get(k) for k in acknowledged}, acknowledged)
        # ...and every one the load acknowledged: as many rows as 202s (a primary key: none twice).
        self.assertEqual(len(rows), accepted_total)
        self.assertEqual(bus.stop(), 0)
        print(f"disk full ({case}): {int(accepted_total)} payments acknowledged, {len(refused)} refused "
              f"with 503 and accepted on retry once space returned; {len(rows)} rows, each once")


if __name__ == "__main__":
    unittest.main(verbosity=2)
