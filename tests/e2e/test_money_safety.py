"""End to end: the money-safety holes a review found, each as the scenario that would pay a
pay_id twice or lose a payment (API.md 4 and 6): a pay request lost with its connection, a
channel that forgets what it said, ..."""

import base64
import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CHANNEL_SIM, Bus, ChannelSim, PgCluster, free_port, keys_dir, make_temp_dir, raw_http  # noqa: E402
from paybus_client import Client  # noqa: E402
from test_channels import beside_a_sound_channel, notification  # noqa: E402


FINAL = ("SUCCEEDED", "FAILED", "CLOSED")


def wait_for(test, what, condition, timeout=60, pause=0.1):
    """Waits until `condition()` is true; fails `test` with `what` after `timeout` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(pause)
    test.fail(f"timed out waiting for {what}")


def wait_status(test, client, pay_id, statuses=FINAL, timeout=60):
    """The payment once its status is one of `statuses`."""
    seen = {}

    def reached():
        status, body, _ = client.request("GET", f"/v1/payments/{pay_id}")
        seen["body"] = body
        return status == 200 and body["status"] in statuses

    wait_for(test, f"payment {pay_id} to be one of {statuses} (last {seen})", reached, timeout)
    return seen["body"]


def signed_answer(channel_id, method, path, body, code=200):
    """An HTTP/1.1 answer of `code` with `body`, signed as API.md section 4 says with
    `channel_id`'s private key, kept alive."""
    timestamp = str(int(time.time()))
    nonce = "n" + os.urandom(12).hex()
    canonical = "\n".join([method, path, timestamp, nonce, hashlib.sha256(body).hexdigest()])
    signature = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", os.path.join(keys_dir(), f"{channel_id}.key.pem")],
        input=canonical.encode(), capture_output=True, check=True).stdout
    reason = {200: "OK", 404: "Not Found"}.get(code, "Whatever")
    return (f"HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-Paybus-Channel: {channel_id}\r\n"
            f"X-Paybus-Timestamp: {timestamp}\r\nX-Paybus-Nonce: {nonce}\r\n"
            f"X-Paybus-Signature: rsa-sha256={base64.b64encode(signature).decode()}\r\n"
            "\r\n").encode() + body


def read_request(connection, pending):
    """One HTTP request from `connection` (bytes already read in `pending[0]`):
    (method, path, body), or None once the peer closes."""
    while b"\r\n\r\n" not in pending[0]:
        data = connection.recv(65536)
        if not data:
            return None
        pending[0] += data
    head, rest = pending[0].split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(rest) < length:
        data = connection.recv(65536)
        if not data:
            return None
        rest += data
    pending[0] = rest[length:]
    return method, path, rest[:length]


class ScriptedChannel:
    """A channel on 127.0.0.1 speaking the channel protocol with `channel_id`'s key, whose
    every answer `script(channel, method, path, body, served)` decides (`served`: requests
    this connection answered before). The script returns bytes to answer with, or None to
    close the connection unanswered. `go_down()` closes the listening socket, so that
    connections are refused; `come_back()` listens on the same port again."""

    def __init__(self, channel_id, script):
        self.channel_id = channel_id
        self.script = script
        self.requests = []  # (method, path, body)
        self.lock = threading.Lock()
        self.port = None
        self.listener = None
        self.come_back()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def come_back(self):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port or 0))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def go_down(self):
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def _accept(self, listener):
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection):
        pending = [b""]
        served = 0
        with connection:
            while True:
                try:
                    request = read_request(connection, pending)
                except OSError:
                    return
                if request is None:
                    return
                with self.lock:
                    self.requests.append(request)
                answer = self.script(self, *request, served)
                if answer is None:
                    return
                connection.sendall(answer)
                served += 1

    def pay_requests(self, pay_id):
        with self.lock:
            return [r for r in self.requests
                    if r[0] == "POST" and json.loads(r[2] or b"{}").get("pay_id") == pay_id]

    def destroy(self):
        self.go_down()


def pay_through_sim_a(test, channel, sim_b, client, prefix):
    """Pays `prefix`-N until one goes to `channel` (sim-a, weighted 1000 to sim-b's 1);
    its pay_id."""
    for n in range(10):
        status, body, _ = client.pay(f"{prefix}-{n}")
        test.assertEqual(status, 202, body)
        pay_id = body["pay_id"]
        wait_for(test, "a request to either channel",
                 lambda: channel.pay_requests(pay_id) or pay_id in sim_b.payments(), 30)
        if channel.pay_requests(pay_id):
            return pay_id
    test.fail("no payment went to sim-a")


def paid(channel_id, pay_id, status="SUCCEEDED"):
    return json.dumps({"pay_id": pay_id, "channel_txn_id": f"{channel_id}-{pay_id}",
                       "status": status}).encode()


class LostPayRequest(unittest.TestCase):
    def test_a_pay_request_lost_with_a_reused_connection_never_goes_to_another_channel(self):
        # sim-a answers the first request on a connection; the next pay request on that
        # kept-alive connection it takes (the money is gone) and dies before answering,
        # refusing connections for a while. libcurl sends the request again on a new
        # connection, which is refused: the request may have been paid all the same.
        victim = {}
        back = threading.Event()

        def script(channel, method, path, body, served):
            if method == "POST":
                pay_id = json.loads(body)["pay_id"]
                if served >= 1 and not victim:
                    victim["pay_id"] = pay_id
                    channel.go_down()
                    return None
                return signed_answer("sim-a", method, path, paid("sim-a", pay_id))
            pay_id = path.rsplit("/", 1)[1]
            if pay_id == victim.get("pay_id"):
                back.set()
            return signed_answer("sim-a", method, path, paid("sim-a", pay_id))

        channel = ScriptedChannel("sim-a", script)
        with beside_a_sound_channel(channel) as (pg, sim_b, bus, client):
            for n in range(200):
                status, body, _ = client.pay(f"LOST-{n}")
                self.assertEqual(status, 202, body)
                wait_for(self, "the payment to be final or lost with its connection",
                         lambda: victim or client.request(
                             "GET", f"/v1/payments/{body['pay_id']}")[1]["status"] in FINAL)
                if victim:
                    break
            self.assertTrue(victim, "no pay request came on a reused connection")
            pay_id = victim["pay_id"]
            # While sim-a refuses connections, the payment must stay with it.
            wait_for(self, "the bus to try sim-a again",
                     lambda: (bus.metric('paybus_channel_requests_total{channel="sim-a",'
                                         'outcome="UNKNOWN"}') or 0) >= 1
                     or pay_id in sim_b.payments(), timeout=30)
            self.assertNotIn(pay_id, sim_b.payments(), "sent to sim-b as well")
            channel.come_back()
            body = wait_status(self, client, pay_id, timeout=90)
            self.assertEqual(body["status"], "SUCCEEDED", bus.log()[-4000:])
            self.assertTrue(back.is_set(), "settled without asking sim-a")
            self.assertNotIn(pay_id, sim_b.payments(), "sent to sim-b as well")
            self.assertLessEqual(len(channel.pay_requests(pay_id)), 2)


class ForgetfulChannel(unittest.TestCase):
    def run_forgetful(self, restart):
        # sim-a takes the payment (ACCEPTED), then, asked, answers NOT_FOUND twice (a
        # lagging replica) before it answers SUCCEEDED. Its NOT_FOUND would be believed at
        # once (settle_ms 0); sim-b is there to take what is sent elsewhere.
        queries = []

        def script(channel, method, path, body, served):
            if method == "POST":
                return signed_answer("sim-a", method, path,
                                     paid("sim-a", json.loads(body)["pay_id"], "ACCEPTED"))
            pay_id = path.rsplit("/", 1)[1]
            queries.append(pay_id)
            said = "NOT_FOUND" if len(queries) <= 2 else "SUCCEEDED"
            return signed_answer("sim-a", method, path, paid("sim-a", pay_id, said))

        channel = ScriptedChannel("sim-a", script)
        with beside_a_sound_channel(channel, weights=(1000, 1),
                                sets=["channels.0.settle_ms=0"]) as (pg, sim_b, bus, client):
            pay_id = pay_through_sim_a(self, channel, sim_b, client, "HELD")
            wait_for(self, "sim-a to take the payment", lambda: channel.pay_requests(pay_id), 30)
            if restart:
                # The bus stops hard after the ACCEPTED; what sim-a said must outlive it.
                wait_for(self, "the ACCEPTED to be counted",
                         lambda: (bus.metric('paybus_channel_requests_total{channel="sim-a",'
                                             'outcome="ACCEPTED"}') or 0) >= 1, 30)
                bus.kill9()
                bus.start()
            wait_for(self, "two NOT_FOUND answers", lambda: len(queries) >= 2, 60)
            wait_for(self, "the bus to report them",
                     lambda: (bus.metric("paybus_channel_contradictions_total") or 0) >= 2, 30)
            final = wait_status(self, client, pay_id, timeout=90)
            self.assertEqual((final["status"], final["channel"]), ("SUCCEEDED", "sim-a"),
                             bus.log()[-4000:])
            self.assertNotIn(pay_id, sim_b.payments())
            self.assertEqual(len(channel.pay_requests(pay_id)), 1)
            self.assertIn("answers NOT_FOUND for a payment it said it holds", bus.log())

    def test_a_not_found_from_the_channel_that_said_accepted_is_reported_not_believed(self):
        self.run_forgetful(restart=False)

    def test_what_the_channel_said_outlives_a_restart(self):
        self.run_forgetful(restart=True)


class EarlyResult(unittest.TestCase):
    def test_a_notification_for_a_pay_id_yet_to_come_never_decides_it(self):
        # pay_ids are predictable (time, instance, shard, counter): sim-b, which is never
        # routed to, signs SUCCEEDED for every pay_id of a coming 300 ms; then orders are
        # made in those 300 ms, each routed to sim-a.
        pg = PgCluster()
        pg.start()
        sim_a, sim_b = ChannelSim("sim-a").start(), ChannelSim("sim-b").start()
        bus = None
        try:
            bus = Bus(pg.url, sets=["node.order_shards=1"],
                      channels={"sim-a": (sim_a.url, 100), "sim-b": (sim_b.url, 0)}).start()
            with contextlib.closing(Client("127.0.0.1", bus.port)) as client:
                first = client.pay("EARLY-0")[1]["pay_id"]
                instance_and_shard = first[13:20]
                start_ms = int(time.time() * 1000) + 15000
                window = range(start_ms, start_ms + 300)
                foretold = {f"{ms:013d}{instance_and_shard}0000" for ms in window}
                for pay_id in sorted(foretold):
                    body = json.dumps({"pay_id": pay_id, "channel_txn_id": f"forged-{pay_id}",
                                       "status": "SUCCEEDED", "amount": 1999}).encode()
                    answer = raw_http(bus.port, notification("sim-b", "sim-b", body))
                    self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer[:200])
                self.assertLess(time.time() * 1000, start_ms, "signing took too long")
                while time.time() * 1000 < start_ms:
                    time.sleep(0.001)
                made = []
                n = 1
                while time.time() * 1000 < start_ms + 300:
                    status, body, _ = client.pay(f"EARLY-{n}")
                    self.assertEqual(status, 202, body)
                    made.append(body)
                    n += 1
                hits = [body for body in made if body["pay_id"] in foretold]
                self.assertTrue(hits, "no order got a foretold pay_id")
                for body in hits:
                    self.assertEqual(body["status"], "PROCESSING", body)  # not decided at creation
                    final = wait_status(self, client, body["pay_id"])
                    self.assertEqual((final["status"], final["channel"]), ("SUCCEEDED", "sim-a"))
                    self.assertEqual(final["channel_txn_id"], sim_a.payments()[body["pay_id"]]["channel_txn_id"])
                bus.wait_metric("paybus_results_conflicting_total", lambda v: v == len(hits))
                print(f"{len(hits)} of {len(made)} orders got a foretold pay_id", file=sys.stderr)
        finally:
            if bus is not None:
                bus.destroy()
            sim_a.destroy()
            sim_b.destroy()
            pg.destroy()


class ReplayedAnswers(unittest.TestCase):
    def test_a_replayed_signed_answer_is_not_believed(self):
        # sim-a fails the pay request (HTTP 500: it may hold it), answers the first
        # query NOT_FOUND before its settle time, then sends that same signed answer
        # again (a replay) once the settle time is up, then SUCCEEDED.
        said = {}
        queries = []

        def script(channel, method, path, body, served):
            if method == "POST":
                return signed_answer("sim-a", method, path, b'{"error":"busy"}', code=500)
            pay_id = path.rsplit("/", 1)[1]
            queries.append(pay_id)
            if len(queries) == 1:
                said["not_found"] = signed_answer("sim-a", method, path,
                                                  paid("sim-a", pay_id, "NOT_FOUND"))
                return said["not_found"]
            if len(queries) == 2:
                return said["not_found"]
            return signed_answer("sim-a", method, path, paid("sim-a", pay_id))

        channel = ScriptedChannel("sim-a", script)
        with beside_a_sound_channel(channel, weights=(1000, 1),
                                sets=["channels.0.settle_ms=1500"]) as (pg, sim_b, bus, client):
            pay_id = pay_through_sim_a(self, channel, sim_b, client, "REPLAY")
            final = wait_status(self, client, pay_id, timeout=60)
            self.assertEqual((final["status"], final["channel"]), ("SUCCEEDED", "sim-a"),
                             bus.log()[-3000:])
            self.assertGreaterEqual(len(queries), 3)
            self.assertNotIn(pay_id, sim_b.payments())
            self.assertIn("a replayed answer", bus.log())

    def test_a_replayed_notification_is_refused_after_a_restart(self):
        pg = PgCluster()
        pg.start()
        sim_a = ChannelSim("sim-a").start()
        bus = None
        try:
            bus = Bus(pg.url, channels={"sim-a": (sim_a.url, 100)}).start()
            with contextlib.closing(Client("127.0.0.1", bus.port)) as client:
                pay_id = client.pay("NOTIFY-1")[1]["pay_id"]
                wait_status(self, client, pay_id)
            body = json.dumps({"pay_id": pay_id, "channel_txn_id": "sim-a-1",
                               "status": "SUCCEEDED", "amount": 1999}).encode()
            request = notification("sim-a", "sim-a", body)
            self.assertTrue(raw_http(bus.port, request).startswith(b"HTTP/1.1 200"))
            self.assertIn(b"replayed_request", raw_http(bus.port, request))
            # The nonce outlives the process: the same request after a restart.
            bus.wait_metric("paybus_store_batches_total", lambda v: v is not None and v >= 1)
            bus.stop()
            bus.start()
            answer = raw_http(bus.port, request)
            self.assertTrue(answer.startswith(b"HTTP/1.1 401"), answer[:300])
            self.assertIn(b"replayed_request", answer)
        finally:
            if bus is not None:
                bus.destroy()
            sim_a.destroy()
            pg.destroy()


class ContractGaps(unittest.TestCase):
    def test_the_simulator_started_as_the_api_shows_takes_its_id_from_its_key(self):
        keys = keys_dir()
        pg = PgCluster()
        pg.start()
        port = free_port()
        log_dir = make_temp_dir("sim")
        with open(os.path.join(log_dir, "sim.log"), "wb") as log:
            sim = subprocess.Popen([CHANNEL_SIM, "--listen", f"127.0.0.1:{port}",
                                    "--key", f"{keys}/sim-a.key.pem",
                                    "--bus-public-key", f"{keys}/paybus.pub.pem"],
                                   stdout=log, stderr=subprocess.STDOUT)
        bus = None
        try:
            bus = Bus(pg.url, channels={"sim-a": (f"http://127.0.0.1:{port}", 100)}).start()
            with contextlib.closing(Client("127.0.0.1", bus.port)) as client:
                pay_id = client.pay("SIM-ID-1")[1]["pay_id"]
                final = wait_status(self, client, pay_id)
                self.assertEqual((final["status"], final["channel"]), ("SUCCEEDED", "sim-a"))
            # A normal first start (a store that does not exist yet) logs no error.
            self.assertEqual([line for line in bus.log().splitlines() if " error " in line], [])
        finally:
            if bus is not None:
                bus.destroy()
            sim.terminate()
            sim.wait(10)
            pg.destroy()
            shutil.rmtree(log_dir, ignore_errors=True)

    def test_the_simulator_refuses_to_guess_an_id_from_a_key_name_that_is_none(self):
        keys = keys_dir()
        odd = make_temp_dir("key")
        try:
            shutil.copy(f"{keys}/sim-a.key.pem", os.path.join(odd, "my key.pem"))
            out = subprocess.run([CHANNEL_SIM, "--listen", f"127.0.0.1:{free_port()}",
                                  "--key", os.path.join(odd, "my key.pem"),
                                  "--bus-public-key", f"{keys}/paybus.pub.pem"],
                                 capture_output=True, text=True, timeout=30)
            self.assertEqual(out.returncode, 2)
            self.assertIn("--channel-id", out.stderr)
        finally:
            shutil.rmtree(odd, ignore_errors=True)


REPLAY = os.path.join(os.environ.get("PAYBUS_BUILD", "build"), "tools", "paybus-replay")


class RowsKeptApart(unittest.TestCase):
    def kept_apart(self, bus, pay_id):
        """What the stopped bus's store keeps apart for pay_id (paybus-replay show)."""
        shown = subprocess.run([REPLAY, "--store", os.path.join(bus.dir, "data", "store"), "show",
                                pay_id], capture_output=True, text=True, timeout=30)
        self.assertEqual(shown.returncode, 0, shown.stderr)
        return json.loads(shown.stdout)["database_conflicts"]

    def test_a_row_the_database_holds_otherwise_is_kept_apart_not_dropped(self):
        pg = PgCluster()
        pg.start()
        sim_a = ChannelSim("sim-a").start()
        bus = None
        try:
            bus = Bus(pg.url, channels={"sim-a": (sim_a.url, 100)}).start()
            with contextlib.closing(Client("127.0.0.1", bus.port)) as client:
                first = client.pay("APART-0")[1]["pay_id"]
                wait_status(self, client, first)
                pg.wait_rows(f"SELECT 1 FROM payment_results WHERE pay_id = '{first}'")
                # Another writer put an order under demo's next merchant_order_no.
                pg.query("INSERT INTO payment_orders (pay_id, merchant_id, merchant_order_no, amount, "
                         "currency, instance_id, created_at) VALUES ('111111111111111111111111', "
                         "'demo', 'APART-1', 5, 'USD', 9, now())")
                pay_id = client.pay("APART-1")[1]["pay_id"]
                self.assertEqual(wait_status(self, client, pay_id)["status"], "SUCCEEDED")
                # Its order row and its result row are kept apart, never written or dropped.
                bus.wait_metric("paybus_db_rows_conflicting_total", lambda v: v == 2)
                bus.wait_metric("paybus_db_backlog", lambda v: v == 0)
            self.assertEqual(pg.query("SELECT pay_id, amount FROM payment_orders WHERE "
                                      "merchant_order_no = 'APART-1'"),
                             [["111111111111111111111111", "5"]])
            self.assertEqual(pg.query(f"SELECT count(*) FROM payment_results WHERE pay_id = '{pay_id}'"),
                             [["0"]])
            self.assertIn("kept apart", bus.log())
            bus.stop()
            kept = self.kept_apart(bus, pay_id)
            self.assertEqual(sorted(k["table"] for k in kept), ["payment_orders", "payment_results"])
            order = next(k for k in kept if k["table"] == "payment_orders")
            self.assertEqual(order["ours"]["pay_id"], pay_id)
            self.assertEqual(order["theirs"][0]["pay_id"], "111111111111111111111111")
        finally:
            if bus is not None:
                bus.destroy()
            sim_a.destroy()
            pg.destroy()

    def test_a_result_the_database_holds_otherwise_is_kept_apart_not_dropped(self):
        pg = PgCluster()
        pg.start()
        # The channel takes the payment and says so 4 s later: the order row
        # reaches the database first, and another writer's result comes between.
        sim_a = ChannelSim("sim-a").start()
        sim_a.mode({"accepted_ratio": 1, "notify_delay_ms": 4000})
        bus = None
        try:
            bus = Bus(pg.url, channels={"sim-a": (sim_a.url, 100)}).start()
            with contextlib.closing(Client("127.0.0.1", bus.port)) as client:
                pay_id = client.pay("APART-R")[1]["pay_id"]
                pg.wait_rows(f"SELECT 1 FROM payment_orders WHERE pay_id = '{pay_id}'")
                self.assertEqual(
                    pg.query("INSERT INTO payment_results (pay_id, status, channel_id, amount, "
                             f"finished_at, source) VALUES ('{pay_id}', 'FAILED', 'sim-a', 100, "
                             "now(), 'channel') ON CONFLICT DO NOTHING RETURNING pay_id")[:1],
                    [[pay_id]], "the bus's result reached the database before the other writer's")
                self.assertEqual(wait_status(self, client, pay_id)["status"], "SUCCEEDED")
                bus.wait_metric("paybus_db_rows_conflicting_total", lambda v: v == 1)
                bus.wait_metric("paybus_db_backlog", lambda v: v == 0)
            self.assertEqual(pg.query(f"SELECT status FROM payment_results WHERE pay_id = '{pay_id}'"),
                             [["FAILED"]])
            self.assertIn("the table holds another result under its pay_id", bus.log())
            bus.stop()
            kept = self.kept_apart(bus, pay_id)
            self.assertEqual([k["table"] for k in kept], ["payment_results"])
            self.assertEqual(kept[0]["ours"]["status"], "SUCCEEDED")
            self.assertEqual(kept[0]["theirs"][0]["status"], "FAILED")
        finally:
            if bus is not None:
                bus.destroy()
            sim_a.destroy()
            pg.destroy()


class InstanceNumbers(unittest.TestCase):
    def setUp(self):
        self.pg = PgCluster()
        self.pg.start()
        self.buses = []

    def tearDown(self):
        for bus in self.buses:
            bus.destroy()
        self.pg.destroy()

    def bus(self, sets=()):
        bus = Bus(self.pg.url, sets=list(sets))
        self.buses.append(bus)
        return bus

    def test_a_number_taken_while_the_registry_was_down_is_entered_and_never_handed_out(self):
        self.pg.stop()
        first = self.bus(["node.instance_id=7"]).start()
        self.assertIn("using node.instance_id = 7", first.log())
        self.pg.start()
        rows = self.pg.wait_rows("SELECT instance_id, fingerprint FROM paybus_instances", 60)
        self.assertEqual([r[0] for r in rows], ["7"], first.log()[-2000:])
        second = self.bus().start()
        self.assertIn("registered as instance 8", second.log())
        fingerprints = [r[0] for r in self.pg.query("SELECT fingerprint FROM paybus_instances")]
        self.assertEqual(len(set(fingerprints)), 2)
        self.assertIsNone(first.process.poll())

    def test_a_number_the_registry_gave_another_instance_meanwhile_is_refused_at_start(self):
        self.pg.stop()
        first = self.bus(["node.instance_id=1"]).start()
        first.stop()
        self.pg.start()
        second = self.bus().start()
        self.assertIn("registered as instance 1", second.log())
        first.start(wait=False)
        self.assertEqual(first.process.wait(60), 1)
        self.assertIn("belongs to another instance", first.log())

    def test_two_stores_made_at_one_path_on_one_host_get_two_numbers(self):
        # As containers started from one image: same host name, same data_dir.
        first = self.bus().start()
        self.assertIn("registered as instance 1", first.log())
        first.stop()
        kept = first.dir + "-first"
        os.rename(first.dir, kept)
        try:
            os.makedirs(first.dir)
            second = Bus(self.pg.url, data_dir=first.dir)
            self.buses.append(second)
            second.start()
            self.assertIn("registered as instance 2", second.log())
        finally:
            shutil.rmtree(kept, ignore_errors=True)

    def test_a_running_bus_whose_number_another_instance_holds_stops(self):
        # The bus reaches PostgreSQL through a socket the test opens when it
        # chooses: first unreachable (the bus takes node.instance_id), then,
        # once another instance holds that number, reachable.
        proxy = UnixSocketProxy(self.pg.url)
        try:
            first = Bus(proxy.url, sets=["node.instance_id=3"])
            self.buses.append(first)
            first.start()
            self.assertIn("using node.instance_id = 3", first.log())
            self.pg.query("CREATE TABLE IF NOT EXISTS paybus_instances (instance_id serial PRIMARY "
                          "KEY, fingerprint text UNIQUE NOT NULL, uri text, registered_at "
                          "timestamptz NOT NULL DEFAULT now()); INSERT INTO paybus_instances "
                          "(instance_id, fingerprint) VALUES (3, 'another-instance')")
            proxy.open()
            self.assertEqual(first.process.wait(60), 1, first.log()[-2000:])
            self.assertIn("belongs to another instance", first.log())
            self.assertEqual(self.pg.query("SELECT fingerprint FROM paybus_instances"),
                             [["another-instance"]])
        finally:
            proxy.close()


class UnixSocketProxy:
    """PostgreSQL's Unix socket, forwarded from a directory of its own once `open()`
    is called; until then, connecting there fails."""

    def __init__(self, url):
        self.target_dir = url.split("host=", 1)[1].split("&", 1)[0]
        self.dir = make_temp_dir("pgproxy")
        self.url = url.replace(self.target_dir, self.dir)
        self.listener = None

    def open(self):
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(os.path.join(self.dir, ".s.PGSQL.5432"))
        self.listener.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.connect(os.path.join(self.target_dir, ".s.PGSQL.5432"))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        if self.listener is not None:
            self.listener.close()
        shutil.rmtree(self.dir, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
