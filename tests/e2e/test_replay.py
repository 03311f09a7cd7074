"""End to end: paybus-replay over the store of a real, stopped bus (API.md section 1)."""

import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BUILD, Bus, PgCluster, raw_http  # noqa: E402
from paybus_client import Client  # noqa: E402
from test_channels import notification  # noqa: E402

REPLAY = os.path.join(BUILD, "tools", "paybus-replay")


def replay(store, *args):
    out = subprocess.run([REPLAY, "--store", store] + list(args), capture_output=True, text=True, timeout=60)
    return out.returncode, out.stdout, out.stderr


class Replay(unittest.TestCase):
    def test_inspect_verify_and_replay_a_store_whose_database_was_down(self):
        down = PgCluster()  # never started: the bus runs with its database down
        bus = Bus(down.url_only(), sets=["node.instance_id=5"]).start()
        store = os.path.join(bus.dir, "data", "store")
        try:
            client = Client("127.0.0.1", bus.port)
            pay_ids = [client.pay(f"P-{i}", amount=100 + i)[1]["pay_id"] for i in range(25)]
            client.close()
            # A result for a pay_id the store holds no order for waits for it;
            # another for the same pay_id meanwhile is kept apart as a conflict.
            early = "9" * 24
            for txn in ("E-1", "E-2"):
                body = json.dumps({"pay_id": early, "channel_txn_id": txn, "status": "SUCCEEDED",
                                   "amount": 500, "paid_at": "2026-11-22T00:00:00.000Z"}).encode()
                answer = raw_http(bus.port, notification("sim-a", "sim-a", body))
                self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer[:200])
            self.assertEqual(bus.metric("paybus_results_conflicting_total"), 1)
            code, _, err = replay(store, "stats")
            self.assertEqual(code, 1)
            self.assertIn("held by another process", err)
            self.assertEqual(bus.stop(), 0)

            code, out, _ = replay(store, "stats")
            self.assertEqual(code, 0)
            stats = json.loads(out)
            self.assertEqual(stats["keys"]["orders"], 25)
            self.assertEqual(stats["database_backlog"], 25)
            self.assertEqual(stats["instance_id"], "5")

            code, out, _ = replay(store, "list", "--limit", "10")
            self.assertEqual((code, len(out.splitlines())), (0, 10))
            code, out, _ = replay(store, "list", "--pending")
            self.assertEqual(len(out.splitlines()), 25)  # no channel took them

            code, out, _ = replay(store, "show", pay_ids[3])
            shown = json.loads(out)
            self.assertEqual((shown["merchant_order_no"], shown["amount"], shown["status"]), ("P-3", 103, "PROCESSING"))
            self.assertEqual(replay(store, "show", "12345")[0], 1)
            code, out, _ = replay(store, "show", early)
            self.assertEqual((code, json.loads(out)["result_waiting_for_order"]), (0, "SUCCEEDED"))
            self.assertEqual(json.loads(replay(store, "stats")[1])["keys"]["conflicts"], 1)

            code, out, _ = replay(store, "export", "--format", "jsonl")
            lines = [json.loads(line) for line in out.splitlines()]
            self.assertEqual(sorted(l["pay_id"] for l in lines), sorted(pay_ids))

            code, out, _ = replay(store, "verify")
            self.assertEqual(code, 0, out)
            self.assertIn("25 orders checked, 0 problems", out)

            pg = PgCluster(down.dir)
            pg.start()
            code, out, err = replay(store, "replay", "--database", pg.url)
            self.assertEqual(code, 0, err)
            self.assertIn("25 order rows", out)
            self.assertEqual(pg.scalar("SELECT count(*) FROM payment_orders"), "25")
            code, out, _ = replay(store, "replay", "--database", pg.url)
            self.assertEqual(code, 0)
            self.assertIn("0 order rows", out)
            self.assertEqual(pg.scalar("SELECT count(*) FROM payment_orders"), "25")
            self.assertEqual(json.loads(replay(store, "stats")[1])["database_backlog"], 0)
            self.assertEqual(replay("/nonexistent/store", "stats")[0], 1)
        finally:
            bus.destroy()
            down.destroy()


if __name__ == "__main__":
    unittest.main(verbosity=2)
