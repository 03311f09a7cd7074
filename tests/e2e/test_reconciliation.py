"""End to end: reconciliation (API.md section 7) with the real binaries. A day of payments
through the channel simulator with differences of every class planted in its signed
statement; repairs made through the store like any result (their payment_results row,
source reconciliation, one webhook); a second run repairs nothing; a forged statement
changes nothing; a statement read from a file; the bus killed -9 during a run."""

import base64
import datetime
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BUILD, Bus, ChannelSim, PgCluster, keys_dir, make_temp_dir, raw_http  # noqa: E402
from paybus_client import Client  # noqa: E402
from test_money_safety import wait_for, wait_status  # noqa: E402
from test_webhooks import Receiver  # noqa: E402

CLASSES = ("matched", "repaired", "missing_here", "missing_at_channel", "amount_mismatch",
           "status_mismatch", "duplicate_line", "malformed_line")


def today():
    """Today's UTC day; waits past midnight when it is less than 5 minutes away, so that a
    test's payments all fall on one day."""
    now = datetime.datetime.now(datetime.timezone.utc)
    midnight = (now + datetime.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    if (midnight - now).total_seconds() < 300:
        time.sleep((midnight - now).total_seconds() + 1)
        now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%d")


def reconcile(bus, channel, date, file=None, repair=True, timeout=120):
    """POST /v1/admin/reconcile signed with the bus's own key; (status, JSON body)."""
    body = {"channel": channel, "date": date, "repair": repair}
    if file:
        body["file"] = file
    data = json.dumps(body).encode()
    target = "/v1/admin/reconcile"
    timestamp, nonce = str(int(time.time())), base64.urlsafe_b64encode(os.urandom(15)).decode()
    canonical = "\n".join(["POST", target, timestamp, nonce, hashlib.sha256(data).hexdigest()])
    raw = subprocess.run(["openssl", "dgst", "-sha256", "-sign", f"{keys_dir()}/paybus.key.pem"],
                         input=canonical.encode(), capture_output=True, check=True).stdout
    request = (f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               f"X-Paybus-Timestamp: {timestamp}\r\nX-Paybus-Nonce: {nonce}\r\n"
               f"X-Paybus-Signature: rsa-sha256={base64.b64encode(raw).decode()}\r\n"
               f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode() + data
    answer = raw_http(bus.port, request, timeout=timeout).decode()
    head, _, payload = answer.partition("\r\n\r\n")
    return int(head.split(" ", 2)[1]), json.loads(payload)


def statement_file(date, lines):
    """A statement of `date` in a folder of its own, with `lines` (text, each ending in a
    newline) after the header; its path."""
    path = os.path.join(make_temp_dir("statements"), f"{date}.csv")
    with open(path, "w") as f:
        f.write("channel_txn_id,pay_id,amount,currency,status,paid_at\n")
        f.writelines(lines)
    return path


def report_lines(bus, channel, date):
    path = os.path.join(bus.dir, "data", "reports", "reconciliation", channel, date + ".jsonl")
    with open(path) as f:
        return [json.loads(line) for line in f]


def summary_path(bus, channel, date):
    return os.path.join(bus.dir, "data", "reports", "reconciliation", channel, date + ".summary.json")


class Reconciliation(unittest.TestCase):
    def setUp(self):
        self.pg = PgCluster()
        self.pg.start()
        self.sim = ChannelSim("sim-a").start()
        self.receiver = Receiver()
        # A run is answered when it is done: a million lines under ASan take longer than
        # the default request timeout.
        self.bus = Bus(self.pg.url, channels={"sim-a": (self.sim.url, 100)},
                       sets=["http.request_timeout_ms=300000"], reconcile_at="")
        self.bus.start()
        self.client = Client("127.0.0.1", self.bus.port)
        self.date = today()

    def tearDown(self):
        self.client.close()
        self.bus.destroy()
        self.sim.destroy()
        self.receiver.close()
        self.pg.destroy()

    def pay(self, order_no):
        status, body, _ = self.client.pay(order_no, amount=1000, notify_url=self.receiver.url)
        self.assertIn(status, (200, 201, 202), body)
        return body["pay_id"]

    def lagging_payments(self, count):
        """Payments the channel took and settled, that the bus holds PROCESSING: answered
        ACCEPTED, the notification lost, every query answered ACCEPTED still."""
        self.sim.mode({"accepted_ratio": 1.0, "notify_loss_ratio": 1.0, "query_lag": True})
        pay_ids = [self.pay(f"LAG-{i}") for i in range(count)]
        wait_for(self, "the lagging payments taken", lambda: all(
            self.sim.payments().get(p, {}).get("status") == "SUCCEEDED" for p in pay_ids))
        self.sim.mode({"accepted_ratio": 0.0, "notify_loss_ratio": 0.0, "query_lag": False})
        for pay_id in pay_ids:
            self.assertEqual(wait_status(self, self.client, pay_id, ("PROCESSING",))["status"],
                             "PROCESSING")
        return pay_ids

    def test_every_class_planted_in_a_signed_statement_counted_exactly_and_repaired_once(self):
        paid = [self.pay(f"R-{i}") for i in range(20)]
        for pay_id in paid:
            wait_status(self, self.client, pay_id, ("SUCCEEDED",))
        lagging = self.lagging_payments(2)
        # In pay_id order the first line is dropped, the second at another amount, the
        # third written twice; a foreign pay_id and a malformed line added.
        self.sim.mode({"statement_drop": 1, "statement_change_amount": 1, "statement_duplicate": 1,
                       "statement_foreign": 1, "statement_malformed": 1})
        first = sorted(paid + lagging)
        status, summary = reconcile(self.bus, "sim-a", self.date)
        self.assertEqual(status, 200, summary)
        self.assertEqual(summary["lines"], 22 - 1 + 1 + 1 + 1)
        self.assertEqual(summary["counts"], {
            "matched": 18, "repaired": 2, "missing_here": 1, "missing_at_channel": 1,
            "amount_mismatch": 1, "status_mismatch": 0, "duplicate_line": 1, "malformed_line": 1})
        self.assertEqual(len(summary["statement_sha256"]), 64)
        with open(summary_path(self.bus, "sim-a", self.date)) as f:
            self.assertEqual(json.load(f), summary)
        found = {(entry["class"], entry["pay_id"]) for entry in report_lines(self.bus, "sim-a", self.date)}
        self.assertIn(("missing_at_channel", first[0]), found)
        self.assertIn(("amount_mismatch", first[1]), found)
        self.assertIn(("duplicate_line", first[2]), found)
        for pay_id in lagging:
            self.assertIn(("repaired", pay_id), found)
        self.assertEqual(len(found), 7)  # every class but matched, each entry once
        malformed = [e for e in report_lines(self.bus, "sim-a", self.date) if e["class"] == "malformed_line"]
        self.assertEqual(malformed[0]["line"], summary["lines"] + 1)  # the last line of the file

        # Repaired: SUCCEEDED through sim-a, its payment_results row with source
        # reconciliation, one webhook.
        for pay_id in lagging:
            body = wait_status(self, self.client, pay_id, ("SUCCEEDED",))
            self.assertEqual(body["channel"], "sim-a")
            self.assertTrue(self.pg.wait_rows(
                f"SELECT 1 FROM payment_results WHERE pay_id = '{pay_id}' "
                "AND source = 'reconciliation' AND status = 'SUCCEEDED'"))
            wait_for(self, "the repaired payment's webhook", lambda: self.receiver.delivered(pay_id))
        # Nothing else changed: the amount mismatch is still SUCCEEDED at its own amount.
        self.assertTrue(self.pg.wait_rows(f"SELECT 1 FROM payment_results WHERE pay_id = '{first[1]}'"))
        self.assertEqual(self.pg.scalar(f"SELECT amount FROM payment_results WHERE pay_id = '{first[1]}'"), "1000")
        self.assertEqual(self.bus.metric('paybus_reconciliation_lines_total{channel="sim-a"}'), 24)
        self.assertEqual(self.bus.metric(
            'paybus_reconciliation_differences_total{channel="sim-a",class="repaired"}'), 2)

        # A second run repairs nothing and counts the repairs matched.
        status, again = reconcile(self.bus, "sim-a", self.date)
        self.assertEqual(status, 200, again)
        self.assertEqual(again["counts"]["repaired"], 0)
        self.assertEqual(again["counts"]["matched"], 20)
        self.assertEqual(self.pg.scalar("SELECT count(*) FROM payment_results WHERE source = 'reconciliation'"), "2")
        for pay_id in lagging:
            self.assertEqual(len(self.receiver.delivered(pay_id)), 1)

    def test_a_statement_read_from_a_file_and_a_final_status_never_changed(self):
        self.sim.mode({"failed_ratio": 1.0})
        failed = self.pay("F-1")
        wait_status(self, self.client, failed, ("FAILED",))
        self.sim.mode({"failed_ratio": 0.0})
        lagging = self.lagging_payments(1)[0]
        folder = make_temp_dir("statements")
        path = os.path.join(folder, f"{self.date}.csv")
        with open(path, "w") as f:
            f.write("\ufeffchannel_txn_id,pay_id,amount,currency,status,paid_at\r\n")
            f.write(f"T-1,{failed},1000,CNY,SUCCEEDED,{self.date}T12:00:00Z\r\n")
            f.write(f"T-2,{lagging},1000,CNY,SUCCEEDED,{self.date}T12:00:00Z\r\n")
        status, summary = reconcile(self.bus, "sim-a", self.date, file=path)
        self.assertEqual(status, 200, summary)
        self.assertEqual(summary["counts"]["status_mismatch"], 1)
        self.assertEqual(summary["counts"]["repaired"], 1)
        self.assertEqual(wait_status(self, self.client, failed)["status"], "FAILED")
        self.assertEqual(wait_status(self, self.client, lagging, ("SUCCEEDED",))["channel_txn_id"], "T-2")

    def test_a_forged_statement_changes_nothing_and_writes_no_report(self):
        lagging = self.lagging_payments(1)[0]
        # The statement comes from another simulator calling itself sim-a, signing with sim-b's key.
        forger = ChannelSim("sim-a", key_owner="sim-b").start()
        try:
            self.bus.stop()
            self.bus = Bus(self.pg.url, data_dir=self.bus.dir,
                           channels={"sim-a": (self.sim.url, 100,
                                               {"statement_url": forger.url + "/v1/statements/{date}"})},
                           reconcile_at="")
            self.bus.start()
            self.client.close()
            self.client = Client("127.0.0.1", self.bus.port)
            status, body = reconcile(self.bus, "sim-a", self.date)
            self.assertEqual(status, 502, body)
            self.assertIn("signature does not verify", body["error"]["message"])
            self.assertFalse(os.path.exists(summary_path(self.bus, "sim-a", self.date)))
            self.assertIn("no report written", self.bus.log())
            self.assertEqual(wait_status(self, self.client, lagging, ("PROCESSING",))["status"], "PROCESSING")
        finally:
            forger.destroy()

    def test_killed_during_a_run_then_run_again_repairs_nothing_twice(self):
        lagging = self.lagging_payments(3)
        path = statement_file(self.date, [
            f"T-{pay_id},{pay_id},1000,CNY,SUCCEEDED,{self.date}T12:00:00Z\n" for pay_id in lagging] + [
            # long enough to be killed in the middle
            f"X-{i},8{i:09d},100,CNY,SUCCEEDED,{self.date}T12:00:00Z\n" for i in range(1_000_000)])
        threading.Thread(target=lambda: self._reconcile_ignoring_errors(path), daemon=True).start()
        wait_for(self, "the run to start", lambda: "started (" + path in self.bus.log())
        self.bus.kill9()
        self.assertFalse(os.path.exists(summary_path(self.bus, "sim-a", self.date)),
                         "the run finished before the kill: the test needs a longer statement")
        self.bus.start()
        status, summary = reconcile(self.bus, "sim-a", self.date, file=path)
        self.assertEqual(status, 200, summary)
        self.assertEqual(summary["counts"]["missing_here"], 1_000_000)
        self.assertEqual(summary["counts"]["repaired"] + summary["counts"]["matched"], 3)
        for pay_id in lagging:
            wait_status(self, self.client, pay_id, ("SUCCEEDED",))
        self.assertTrue(self.pg.wait_rows("SELECT 1 FROM payment_results WHERE source = 'reconciliation' "
                                          "HAVING count(*) = 3"))
        self.assertEqual(self.pg.scalar("SELECT count(*) FROM payment_results"), "3")

    def test_paybus_replay_reconciles_a_stopped_store_and_repairs_only_when_told(self):
        lagging = self.lagging_payments(1)[0]
        path = statement_file(self.date, [f"T-1,{lagging},1000,CNY,SUCCEEDED,{self.date}T12:00:00Z\n"])
        self.bus.stop()
        store = os.path.join(self.bus.dir, "data", "store")
        replay = os.path.join(BUILD, "tools", "paybus-replay")

        def run(*more):
            out = subprocess.run([replay, "--store", store, "reconcile", "--channel", "sim-a",
                                  "--date", self.date, "--file", path, *more],
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr)
            return json.loads(out.stdout)

        def status():
            out = subprocess.run([replay, "--store", store, "show", lagging],
                                 capture_output=True, text=True, timeout=60, check=True)
            return json.loads(out.stdout)["status"]

        self.assertEqual(run()["counts"]["repaired"], 1)
        self.assertEqual(status(), "PROCESSING")  # report only: nothing written
        self.assertEqual(run("--repair")["counts"]["repaired"], 1)
        self.assertEqual(status(), "SUCCEEDED")
        self.assertEqual(run("--repair")["counts"]["matched"], 1)  # never twice
        self.bus.start()
        self.assertTrue(self.pg.wait_rows(f"SELECT 1 FROM payment_results WHERE pay_id = '{lagging}' "
                                          "AND source = 'reconciliation'"))

    def test_the_daily_run_reconciles_the_previous_day_and_a_failed_one_is_tried_again(self):
        yesterday = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)).strftime("%Y-%m-%d")
        self.bus.stop()
        # Its time has passed today (00:00): at start, the previous day is run at once.
        self.bus = Bus(self.pg.url, data_dir=self.bus.dir,
                       channels={"sim-a": (self.sim.url, 100),
                                 "sim-b": ("http://127.0.0.1:9", 0,
                                           {"statement_url": "http://127.0.0.1:9/statements/{date}"})},
                       reconcile_at="00:00")
        self.bus.start()
        wait_for(self, "the daily run of sim-a", lambda: os.path.exists(summary_path(self.bus, "sim-a", yesterday)))
        with open(summary_path(self.bus, "sim-a", yesterday)) as f:
            self.assertEqual(json.load(f)["date"], yesterday)
        wait_for(self, "sim-b's failed run to be scheduled again",
                 lambda: f"reconciliation sim-b {yesterday}: tried again in 60 s" in self.bus.log())
        self.assertIn(f"reconciliation sim-b {yesterday}: failed, no report written", self.bus.log())
        self.assertFalse(os.path.exists(summary_path(self.bus, "sim-b", yesterday)))
        self.assertIsNotNone(self.bus.metric(
            'paybus_reconciliation_last_success_timestamp_seconds{channel="sim-a"}'))

    def test_a_statement_that_never_comes_does_not_hold_the_stop_up(self):
        import socket
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # connections complete in the kernel; nothing ever answers
        try:
            self.bus.stop()
            url = f"http://127.0.0.1:{silent.getsockname()[1]}/statements/{{date}}"
            self.bus = Bus(self.pg.url, data_dir=self.bus.dir,
                           channels={"sim-a": (self.sim.url, 100, {"statement_url": url})},
                           reconcile_at="00:00")
            self.bus.start()
            wait_for(self, "the daily run to start", lambda: "reconciliation sim-a" in self.bus.log()
                     and "started (the channel's statement)" in self.bus.log())
            # Within the harness's 30 s, not after the statement's 60 s stall limit.
            self.assertEqual(self.bus.stop(timeout=30), 0, self.bus.log())
            self.assertIn("the bus is stopping", self.bus.log())
        finally:
            silent.close()

    def _reconcile_ignoring_errors(self, path):
        try:
            reconcile(self.bus, "sim-a", self.date, file=path)
        except Exception:
            pass  # the bus is killed under it


if __name__ == "__main__":
    unittest.main()
