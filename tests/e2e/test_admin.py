"""End to end: the admin console (API.md section 8) with the real paybus-admin against a real
bus, two channel simulators, PostgreSQL and a webhook receiver: every command's text and JSON,
live weights, disabled channels, a breaker held open, paused webhooks and database feed, changes
that survive kill -9, bad commands that change nothing, no bus, mutual TLS, the interactive
console through a pseudo-terminal, and a console killed mid-command."""

import collections
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (PAYBUS_ADMIN, Bus, ChannelSim, PgCluster, admin_json, free_port,  # noqa: E402
                     make_temp_dir, run_admin, run_paybusd)
from paybus_client import Client  # noqa: E402
from test_money_safety import wait_for, wait_status  # noqa: E402
from test_webhooks import Receiver  # noqa: E402


class AdminBus(unittest.TestCase):
    """A bus with channels sim-a and sim-b (weight 100 each) and a webhook receiver."""

    def setUp(self):
        self.pg = PgCluster()
        self.pg.start()
        self.sims = {cid: ChannelSim(cid).start() for cid in ("sim-a", "sim-b")}
        self.receiver = Receiver()
        self.bus = Bus(self.pg.url, channels={cid: (sim.url, 100) for cid, sim in self.sims.items()},
                       sets=["notify.retry_base_ms=100", "notify.retry_max_ms=400"]).start()
        self.client = Client("127.0.0.1", self.bus.port)
        self.orders = 0

    def tearDown(self):
        self.client.close()
        self.bus.destroy()
        for sim in self.sims.values():
            sim.stop()
        self.receiver.close()
        self.pg.stop()

    def pay(self, count):
        """`count` new payments, each final; their pay_ids."""
        pay_ids = []
        for _ in range(count):
            self.orders += 1
            status, body, _ = self.client.pay(f"adm-{self.orders}", notify_url=self.receiver.url)
            self.assertEqual(status, 202, body)
            pay_ids.append(body["pay_id"])
        for pay_id in pay_ids:
            wait_status(self, self.client, pay_id, ("SUCCEEDED",))
        return pay_ids

    def taken_by(self, pay_ids):
        """How many of `pay_ids` each simulator holds."""
        counts = collections.Counter()
        for cid, sim in self.sims.items():
            held = sim.payments()
            counts[cid] = sum(1 for pay_id in pay_ids if pay_id in held)
        return counts

    def switches(self):
        return admin_json(self.bus, "degrade")["switches"]


class Commands(AdminBus):
    def test_every_command_answers_text_and_json(self):
        pay_id = self.pay(1)[0]
        self.assertIn("channel weight ID N", run_admin(self.bus, "help", json_output=False)[1])
        self.assertIn("status", admin_json(self.bus, "help")["commands"][1])

        status = admin_json(self.bus, "status")
        for key in ("instance_id", "version", "uptime_seconds", "accepting", "store_up", "db_up",
                    "db_backlog", "notify_backlog", "dispatch_backlog", "degraded"):
            self.assertIn(key, status)
        self.assertTrue(status["accepting"])
        self.assertEqual(status["degraded"], [])
        code, text, _ = run_admin(self.bus, "status", json_output=False)
        self.assertEqual(code, 0)
        self.assertRegex(text, r"instance_id:\s+1\n")

        channels = admin_json(self.bus, "channels")["channels"]
        self.assertEqual([c["id"] for c in channels], ["sim-a", "sim-b"])
        self.assertEqual(sum(c["succeeded"] for c in channels), 1)
        for channel in channels:
            self.assertEqual(set(channel), {"id", "weight", "enabled", "breaker", "in_flight", "requests",
                                            "succeeded", "failed", "unknown"})
            self.assertEqual(channel["breaker"], "closed")
        text = run_admin(self.bus, "channels", json_output=False)[1].splitlines()
        self.assertEqual(text[0].split(), ["id", "weight", "enabled", "breaker", "in_flight", "requests",
                                           "succeeded", "failed", "unknown"])
        self.assertEqual(text[1].split()[:3], ["sim-a", "100", "true"])
        # The columns line up: every row's second column starts where the header's does.
        start = text[0].index("weight")
        self.assertTrue(all(line[start - 2:start] == "  " and line[start] != " " for line in text[1:]))

        self.assertEqual(admin_json(self.bus, "channel weight sim-a 250")["weight"], 250)
        self.assertFalse(admin_json(self.bus, "channel disable sim-b")["enabled"])
        self.assertTrue(admin_json(self.bus, "channel enable sim-b")["enabled"])
        self.assertEqual(admin_json(self.bus, "channel breaker sim-b open")["breaker"], "forced_open")
        self.assertEqual(admin_json(self.bus, "channel breaker sim-b auto")["breaker"], "closed")
        self.assertEqual(admin_json(self.bus, "degrade")["switches"],
                         {"webhooks": False, "db_feed": False, "order_repair": False,
                          "reconciliation": False})
        self.assertTrue(admin_json(self.bus, "degrade order_repair on")["switches"]["order_repair"])
        self.assertEqual(admin_json(self.bus, "status")["degraded"], ["order_repair"])
        self.assertFalse(admin_json(self.bus, "degrade order_repair off")["switches"]["order_repair"])

        backlog = admin_json(self.bus, "backlog")
        self.assertEqual(set(backlog), {"db", "notify", "dispatch", "oldest_db_seconds",
                                        "oldest_notify_seconds"})
        self.assertEqual(backlog["dispatch"], 0)

        payment = admin_json(self.bus, f"payment {pay_id}")
        self.assertEqual(payment["order"]["merchant_order_no"], "adm-1")
        self.assertEqual(payment["result"]["status"], "SUCCEEDED")
        self.assertIn(payment["route"]["channel_id"], ("sim-a", "sim-b"))
        self.assertEqual(payment["conflicts"], [])
        wait_for(self, "the webhook", lambda: admin_json(self.bus, f"payment {pay_id}")["webhook"]["delivered"])
        self.assertIn("result.status:", run_admin(self.bus, f"payment {pay_id}", json_output=False)[1])

        resent = admin_json(self.bus, f"webhook resend {pay_id}")
        self.assertEqual(resent, {"pay_id": pay_id, "event_id": "evt_" + pay_id, "queued": True})
        wait_for(self, "the webhook sent again", lambda: len(self.receiver.delivered(pay_id)) >= 2)
        self.assertEqual({body["event_id"] for _, body in self.receiver.delivered(pay_id)}, {"evt_" + pay_id})

        self.assertEqual(admin_json(self.bus, "log level debug"), {"level": "debug"})

        audit = admin_json(self.bus, "audit 3")["entries"]
        self.assertEqual([e["command"] for e in audit],
                         ["degrade order_repair off", f"webhook resend {pay_id}", "log level debug"])
        self.assertEqual({e["who"] for e in audit}, {"local"})
        self.assertEqual(len(admin_json(self.bus, "audit")["entries"]), 9)
        text = run_admin(self.bus, "audit 2", json_output=False)[1].splitlines()
        self.assertEqual(text[0].split(), ["at", "who", "command", "result"])

        self.assertEqual(self.bus.metric('paybus_channel_weight{channel="sim-a"}'), 250)
        self.assertEqual(self.bus.metric('paybus_channel_enabled{channel="sim-b"}'), 1)
        self.assertEqual(self.bus.metric('paybus_degraded{switch="webhooks"}'), 0)
        self.assertIn("admin: channel weight sim-a 250 by local: ok", self.bus.log())

    def test_reconcile_runs_and_waits(self):
        pay_ids = self.pay(3)
        day = time.strftime("%Y-%m-%d", time.gmtime())
        summary = admin_json(self.bus, f"reconcile sim-a {day}")
        self.assertEqual(summary["channel"], "sim-a")
        self.assertEqual(summary["date"], day)
        self.assertEqual(summary["counts"]["matched"], self.taken_by(pay_ids)["sim-a"])
        self.assertEqual(admin_json(self.bus, "audit 1")["entries"][0]["command"], f"reconcile sim-a {day}")

    def test_bad_commands_exit_1_and_change_nothing(self):
        before = admin_json(self.bus, "channels"), self.switches(), admin_json(self.bus, "audit")
        for command in ("frobnicate", "channel", "channel weight sim-a", "channel weight sim-a 10001",
                        "channel weight sim-a -1", "channel weight sim-a ten", "channel weight nope 5",
                        "channel disable nope", "channel breaker sim-a closed", "degrade nope on",
                        "degrade webhooks maybe", "payment nope", "webhook resend", "webhook send x",
                        "reconcile sim-a 2026-13-45", "reconcile nope 2026-01-01", "audit 0",
                        "audit many", "log level loud", "status now", ""):
            code, out, err = run_admin(self.bus, command)
            self.assertEqual(code, 1, (command, out, err))
            self.assertEqual(len(err.strip().splitlines()), 1, (command, err))
            self.assertIn("error", json.loads(out), command)
        # -c stops at the first failure: the weight after it is never set.
        code, _, _ = run_admin(self.bus, "channels", "channel weight nope 1", "channel weight sim-a 1")
        self.assertEqual(code, 1)
        after = admin_json(self.bus, "channels"), self.switches(), admin_json(self.bus, "audit")
        self.assertEqual(before, after)

    def test_no_bus_is_exit_3(self):
        code, out, err = run_admin(f"127.0.0.1:{free_port()}", "status")
        self.assertEqual(code, 3, err)
        self.assertIn("cannot connect", err)


class LiveSwitches(AdminBus):
    def test_weights_disable_and_breaker_steer_new_payments(self):
        # Weight 0: none of 100 to sim-a.
        admin_json(self.bus, "channel weight sim-a 0")
        self.assertEqual(self.taken_by(self.pay(100)), {"sim-a": 0, "sim-b": 100})
        # 1 : 3. With 200 payments, sim-a's share is 50 +- 25 (more than 4 standard deviations).
        # Sent 4 at a time (each channel's concurrency): a channel with every slot busy is
        # passed over, so a burst would spill to sim-a whenever sim-b answers slowly.
        admin_json(self.bus, "channel weight sim-a 100")
        admin_json(self.bus, "channel weight sim-b 300")
        shares = collections.Counter()
        for _ in range(50):
            shares.update(self.taken_by(self.pay(4)))
        self.assertTrue(25 <= shares["sim-a"] <= 75, shares)
        # Disabled: none of 200 new payments.
        admin_json(self.bus, "channel disable sim-b")
        self.assertEqual(self.taken_by(self.pay(200)), {"sim-a": 200, "sim-b": 0})
        self.assertEqual(self.bus.metric('paybus_channel_enabled{channel="sim-b"}'), 0)
        admin_json(self.bus, "channel enable sim-b")
        # Breaker held open on sim-a: nothing is sent to it.
        before = self.sims["sim-a"].usage()
        admin_json(self.bus, "channel breaker sim-a open")
        self.assertEqual(self.taken_by(self.pay(50)), {"sim-a": 0, "sim-b": 50})
        self.assertEqual(self.sims["sim-a"].usage(), before)
        self.assertEqual(self.bus.metric('paybus_channel_breaker_state{channel="sim-a"}'), 3)
        admin_json(self.bus, "channel breaker sim-a auto")
        self.assertGreater(self.taken_by(self.pay(60))["sim-a"], 0)

    def test_paused_webhooks_are_held_then_delivered_once(self):
        admin_json(self.bus, "degrade webhooks on")
        self.assertEqual(self.bus.metric('paybus_degraded{switch="webhooks"}'), 1)
        pay_ids = self.pay(30)  # payments go on while webhooks wait
        wait_for(self, "the backlog", lambda: admin_json(self.bus, "backlog")["notify"] == 30)
        self.assertEqual(self.receiver.events, [])
        admin_json(self.bus, "degrade webhooks off")
        wait_for(self, "every webhook", lambda: self.receiver.answered_ok >= set(pay_ids))
        wait_for(self, "an empty backlog", lambda: admin_json(self.bus, "backlog")["notify"] == 0)
        events = [json.loads(body)["event_id"] for _, body, _ in self.receiver.events]
        self.assertEqual(sorted(events), sorted("evt_" + p for p in pay_ids))  # each exactly once

    def test_paused_db_feed_holds_rows_then_writes_each_once(self):
        admin_json(self.bus, "degrade db_feed on")
        pay_ids = self.pay(30)
        wait_for(self, "the rows waiting", lambda: admin_json(self.bus, "backlog")["db"] >= 60)
        self.assertEqual(self.pg.query("SELECT count(*) FROM payment_results")[0][0], "0")
        admin_json(self.bus, "degrade db_feed off")
        rows = self.pg.wait_rows("SELECT count(*) FROM payment_results HAVING count(*) = 30", timeout=60)
        self.assertEqual(rows, [["30"]])
        self.assertEqual(self.pg.query(
            "SELECT count(*), count(DISTINCT pay_id) FROM payment_orders"), [["30", "30"]])
        self.assertEqual(len(pay_ids), 30)

    def test_paused_order_repair_and_reconciliation_wait_then_run(self):
        # Order repair: a payment whose answer never came (UNKNOWN) waits while repair is paused
        # (the driver's unit tests show it is not asked); resumed, it is asked and settled.
        admin_json(self.bus, "channel weight sim-b 0")
        admin_json(self.bus, "degrade order_repair on")
        self.sims["sim-a"].mode({"timeout_ratio": 1.0})
        status, body, _ = self.client.pay("repair-1", notify_url=self.receiver.url)
        self.assertEqual(status, 202)
        pay_id = body["pay_id"]
        unknown = 'paybus_channel_requests_total{channel="sim-a",outcome="UNKNOWN"}'
        wait_for(self, "an UNKNOWN outcome", lambda: self.bus.metric(unknown))
        self.sims["sim-a"].mode({"timeout_ratio": 0.0})
        self.assertIsNone(admin_json(self.bus, f"payment {pay_id}")["result"])
        self.assertEqual(admin_json(self.bus, "backlog")["dispatch"], 1)
        admin_json(self.bus, "degrade order_repair off")
        self.assertEqual(wait_status(self, self.client, pay_id, ("SUCCEEDED",))["status"], "SUCCEEDED")
        self.assertEqual(admin_json(self.bus, f"payment {pay_id}")["result"]["source"], "query")

        # Reconciliation: the daily run waits while paused, and runs once resumed.
        admin_json(self.bus, "degrade reconciliation on")
        self.bus.stop()
        yesterday = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))
        self.bus = Bus(self.pg.url, data_dir=self.bus.dir,
                       channels={cid: (sim.url, 100) for cid, sim in self.sims.items()},
                       reconcile_at="00:00").start()
        summary = os.path.join(self.bus.dir, "data", "reports", "reconciliation", "sim-a",
                               yesterday + ".summary.json")
        wait_for(self, "the paused daily run", lambda: f"reconciliation sim-a {yesterday}: the daily "
                 "run waits while reconciliation is paused" in self.bus.log())
        self.assertFalse(os.path.exists(summary))
        admin_json(self.bus, "degrade reconciliation off")
        wait_for(self, "the daily run", lambda: os.path.exists(summary))

    def test_changes_survive_kill_9(self):
        admin_json(self.bus, "channel weight sim-a 0")
        admin_json(self.bus, "channel disable sim-b")
        admin_json(self.bus, "channel breaker sim-b open")
        admin_json(self.bus, "degrade webhooks on")
        admin_json(self.bus, "log level warn")
        self.bus.kill9()
        self.bus.start()
        channels = {c["id"]: c for c in admin_json(self.bus, "channels")["channels"]}
        self.assertEqual((channels["sim-a"]["weight"], channels["sim-a"]["enabled"]), (0, True))
        self.assertEqual((channels["sim-b"]["enabled"], channels["sim-b"]["breaker"]), (False, "forced_open"))
        self.assertTrue(self.switches()["webhooks"])
        self.assertEqual([e["command"] for e in admin_json(self.bus, "audit")["entries"]],
                         ["channel weight sim-a 0", "channel disable sim-b", "channel breaker sim-b open",
                          "degrade webhooks on", "log level warn"])
        self.assertEqual(self.bus.metric('paybus_channel_weight{channel="sim-a"}'), 0)
        self.assertEqual(self.bus.metric('paybus_degraded{switch="webhooks"}'), 1)
        # With no channel to route to, a payment waits (accepted, not lost).
        status, body, _ = self.client.pay("after-restart", notify_url=self.receiver.url)
        self.assertEqual(status, 202)
        admin_json(self.bus, "channel enable sim-b")
        admin_json(self.bus, "channel breaker sim-b auto")
        wait_status(self, self.client, body["pay_id"], ("SUCCEEDED",))

    def test_a_console_killed_mid_command_leaves_the_bus_unharmed(self):
        # A slow statement keeps the reconcile command waiting while the console is killed.
        path = os.path.join(make_temp_dir("statement"), "fifo")
        os.mkfifo(path)
        day = time.strftime("%Y-%m-%d", time.gmtime())
        console = subprocess.Popen([PAYBUS_ADMIN, "--connect", f"127.0.0.1:{self.bus.admin_port}",
                                    "-c", f"reconcile sim-a {day} {path}"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for(self, "the run to start", lambda: "reconciliation sim-a" in self.bus.log())
        console.kill()
        console.wait()
        with open(path, "w") as f:  # the run reads its statement and ends
            f.write("pay_id,channel_txn_id,amount,currency,status,paid_at\n")
        self.assertEqual(len(self.pay(5)), 5)
        self.assertEqual(admin_json(self.bus, "status")["accepting"], True)
        self.assertIsNone(self.bus.process.poll())


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True)


def make_ca(directory, name):
    key, cert = os.path.join(directory, name + ".key"), os.path.join(directory, name + ".pem")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
            "-days", "2", "-subj", f"/CN={name}")
    return key, cert


def make_cert(directory, name, ca_key, ca_cert):
    key, csr, cert = (os.path.join(directory, name + ext) for ext in (".key", ".csr", ".pem"))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj",
            f"/O=paybus/CN={name}")
    openssl("x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
            "-out", cert, "-days", "2")
    return key, cert


class MutualTls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = make_temp_dir("tls")
        ca_key, cls.ca = make_ca(cls.dir, "ops-ca")
        cls.server_key, cls.server_cert = make_cert(cls.dir, "paybusd", ca_key, cls.ca)
        cls.alice_key, cls.alice_cert = make_cert(cls.dir, "alice", ca_key, cls.ca)
        other_key, cls.other_ca = make_ca(cls.dir, "other-ca")
        cls.mallory_key, cls.mallory_cert = make_cert(cls.dir, "mallory", other_key, cls.other_ca)
        cls.pg = PgCluster()
        cls.pg.start()

    @classmethod
    def tearDownClass(cls):
        cls.pg.stop()

    def test_only_consoles_with_a_certificate_from_the_ca_get_in(self):
        bus = Bus(self.pg.url, admin_config=f'certificate = "{self.server_cert}"\n'
                                            f'key = "{self.server_key}"\ncafile = "{self.ca}"\n').start()
        try:
            self.assertIn("mutual TLS", bus.log())
            alice = ["--certificate", self.alice_cert, "--key", self.alice_key, "--cafile", self.ca]
            code, out, err = run_admin(bus, "channel weight sim-a 5", extra=alice)
            self.assertEqual(code, 0, err)
            entry = admin_json(bus, "audit 1", extra=alice)["entries"][0]
            self.assertEqual(entry["who"], "CN=alice,O=paybus")

            # A certificate from another CA: refused, and the bus says so.
            mallory = ["--certificate", self.mallory_cert, "--key", self.mallory_key, "--cafile", self.ca,
                       "--connect-timeout-ms", "5000"]
            code, out, err = run_admin(bus, "status", extra=mallory)
            self.assertEqual(code, 3, (out, err))
            wait_for(self, "the refusal in the log", lambda: "admin console refused" in bus.log())
            # No certificate at all: refused.
            code, out, err = run_admin(bus, "status", extra=["--connect-timeout-ms", "5000"])
            self.assertEqual(code, 3, (out, err))
            self.assertIsNone(bus.process.poll())
            self.assertEqual(admin_json(bus, "channels", extra=alice)["channels"][0]["weight"], 5)
        finally:
            bus.destroy()

    def test_non_loopback_without_tls_is_a_config_error(self):
        bus = Bus(self.pg.url)
        try:
            code, out = run_paybusd(["--config", bus.config_path, "--set", "admin.listen=0.0.0.0:8079"])
            self.assertEqual(code, 2, out)
            self.assertIn("admin.listen", out)
            self.assertIn("not a loopback address", out)
            code, out = run_paybusd(["--config", bus.config_path, "--set", f"admin.certificate={self.server_cert}"])
            self.assertEqual(code, 2, out)
            self.assertIn("together", out)
        finally:
            bus.destroy()


class Interactive(AdminBus):
    def test_typing_history_and_completion_through_a_terminal(self):
        home = make_temp_dir("home")
        pid, fd = pty.fork()
        if pid == 0:
            os.environ["HOME"] = home
            os.environ["TERM"] = "xterm"
            os.execv(PAYBUS_ADMIN, [PAYBUS_ADMIN, "--connect", f"127.0.0.1:{self.bus.admin_port}"])
        seen = []

        def read_until(text, timeout=30):
            deadline = time.time() + timeout
            while time.time() < deadline:
                if text in "".join(seen):
                    return
                ready, _, _ = select.select([fd], [], [], 0.2)
                if ready:
                    try:
                        seen.append(os.read(fd, 4096).decode(errors="replace"))
                    except OSError:
                        break
            self.fail(f"no {text!r} in {''.join(seen)!r}")

        try:
            read_until("paybus> ")
            os.write(fd, b"channels\r")
            read_until("sim-b")
            seen.clear()
            # Completion: "deg" + TAB becomes "degrade "; "degrade web" + TAB "degrade webhooks ".
            os.write(fd, b"deg\t web\t on\r")
            read_until('paused')
            self.assertTrue(self.switches()["webhooks"])
            seen.clear()
            # Channel ids complete too: "si" + TAB becomes "sim-" (sim-a and sim-b share it);
            # without completion the line would name channel "sib" and fail.
            # (The terminal shows the completion as a redraw, so the answer, not the echo, is
            # what is checked.)
            os.write(fd, b"channel disable si\tb\r")
            read_until("false")
            self.assertFalse({c["id"]: c for c in admin_json(self.bus, "channels")["channels"]}
                             ["sim-b"]["enabled"])
            seen.clear()
            # History: up arrow recalls the last line.
            os.write(fd, b"degrade webhooks off\r")
            read_until("paused")
            seen.clear()
            os.write(fd, b"\x1b[A\r")
            read_until("paused")
            self.assertEqual(admin_json(self.bus, "audit 1")["entries"][0]["command"], "degrade webhooks off")
            self.assertEqual(len([e for e in admin_json(self.bus, "audit")["entries"]
                                  if e["command"] == "degrade webhooks off"]), 2)
            os.write(fd, b"quit\r")
            _, status = os.waitpid(pid, 0)
            self.assertEqual(os.waitstatus_to_exitcode(status), 0)
            with open(os.path.join(home, ".paybus_admin_history")) as f:
                # libedit's format: spaces written as \040.
                self.assertIn("channel disable sim-b", f.read().replace("\\040", " "))
        finally:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.close(fd)


if __name__ == "__main__":
    unittest.main()
