"""End to end: several instances (API.md section 9) as three real paybusd processes on loopback
ports sharing one PostgreSQL: membership through the registry and the seeds, lookups, channel
notifications and the admin console's `payment` forwarded to the owner over CAF's middleman, an
owner killed -9 (503 owner_unavailable, never a guess) and started again."""

import json
import os
import shutil
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Bus, ChannelSim, PgCluster, admin_json, free_port, make_temp_dir,  # noqa: E402
                     raw_http, run_admin, run_paybusd)
from paybus_client import Client  # noqa: E402
from test_channels import notification  # noqa: E402
from test_money_safety import wait_for, wait_status  # noqa: E402
from test_webhooks import Receiver  # noqa: E402


READYZ = b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def slot_of(merchant, order_no):
    """FNV-1a 64 of merchant, a zero byte and the order number, modulo 4096 (API.md section 9)."""
    h = 14695981039346656037
    for byte in merchant.encode() + b"\0" + order_no.encode():
        h = ((h ^ byte) * 1099511628211) % 2 ** 64
    return h % 4096


def slot_owner_of(numbers, order_no, merchant="demo"):
    """The instance number owning the order's slot, as `cluster form` spread them."""
    return sorted(numbers)[slot_of(merchant, order_no) % len(numbers)]


def cluster_address(bus):
    """The [cluster] listen address written in the bus's config."""
    with open(bus.config_path) as f:
        return f.read().split('[cluster]\nlisten = "', 1)[1].split('"', 1)[0]


def cluster_config(address, peers):
    listed = ", ".join(f'"{peer}"' for peer in peers)
    return f'[cluster]\nlisten = "{address}"\npeers = [{listed}]\n'


class ThreeInstances(unittest.TestCase):
    """Three instances, each told of all three addresses (its own among them), paying through a
    channel nobody listens on: payments stay PROCESSING until a notification settles them."""

    def setUp(self):
        self.pg = PgCluster()
        self.pg.start()
        addresses = [f"127.0.0.1:{free_port()}" for _ in range(3)]
        self.buses = [Bus(self.pg.url, extra_config=cluster_config(address, addresses))
                      for address in addresses]
        for bus in self.buses:
            bus.start()
        self.clients = [Client("127.0.0.1", bus.port) for bus in self.buses]
        self.numbers = [admin_json(bus, "status")["instance_id"] for bus in self.buses]
        self.assertEqual(len(set(self.numbers)), 3, self.numbers)
        for bus, number in zip(self.buses, self.numbers):
            for other in self.numbers:
                if other != number:
                    bus.wait_metric(f'paybus_cluster_peer_up{{instance="{other}"}}',
                                    lambda up: up == 1, timeout=60)
        # Not formed yet: no instance decides an order.
        status, body, _ = self.clients[1].pay("too-early")
        self.assertEqual((status, body["error"]["code"]), (503, "owner_unavailable"))
        self.assertTrue(raw_http(self.buses[1].port, READYZ).startswith(b"HTTP/1.1 503"))
        formed = admin_json(self.buses[0], "cluster form")
        self.assertEqual(formed["epoch"], 1)
        self.assertEqual(sorted(formed["slots_by_instance"].values()), [1365, 1365, 1366])
        for bus in self.buses:  # pushed to the peers; ready once the table is there
            bus.wait_metric("paybus_cluster_slot_epoch", lambda epoch: epoch == 1)
            wait_for(self, "/readyz", lambda: raw_http(bus.port, READYZ).startswith(b"HTTP/1.1 200"))
        code, out, _ = run_admin(self.buses[2], "cluster form")
        self.assertNotEqual(code, 0)
        self.assertIn("not_formed", out)
        status = admin_json(self.buses[1], "cluster status")
        self.assertEqual((status["formed"], status["epoch"]), (True, 1))
        self.assertEqual(sorted(m["instance_id"] for m in status["members"]), sorted(self.numbers))
        self.assertTrue(all(m["up"] for m in status["members"]))

    def tearDown(self):
        for client in self.clients:
            client.close()
        for bus in self.buses:
            bus.destroy()
        self.pg.stop()

    def pay_round_robin(self, count, prefix):
        """`count` payments, sent to the instances in turn; their bodies by pay_id."""
        made = {}
        for i in range(count):
            status, body, _ = self.clients[i % 3].pay(f"{prefix}-{i}")
            self.assertEqual(status, 202, body)
            made[body["pay_id"]] = body
        return made

    def owner_index(self, pay_id):
        return self.numbers.index(int(pay_id[13:18]))

    def test_every_instance_answers_every_lookup_as_the_owner_does(self):
        made = self.pay_round_robin(30, "rr")
        for pay_id, created in made.items():
            owner = self.owner_index(pay_id)
            _, from_owner, _ = self.clients[owner].request("GET", f"/v1/payments/{pay_id}")
            self.assertEqual(from_owner["pay_id"], pay_id)
            self.assertEqual(from_owner["merchant_order_no"], created["merchant_order_no"])
            for client in self.clients:
                status, body, _ = client.request("GET", f"/v1/payments/{pay_id}")
                self.assertEqual(status, 200, body)
                self.assertEqual(body["pay_id"], pay_id)
                self.assertEqual(body["merchant_order_no"], created["merchant_order_no"])
        # Another merchant's payment stays hidden through a forward too.
        pay_id = next(iter(made))
        stranger = Client("127.0.0.1", self.buses[(self.owner_index(pay_id) + 1) % 3].port,
                          merchant="other", secret="other-secret")
        self.assertEqual(stranger.request("GET", f"/v1/payments/{pay_id}")[0], 404)
        stranger.close()
        # A pay_id of an instance none of them reaches: no guess that it does not exist.
        unknown = pay_id[:13] + "99998" + pay_id[18:]
        status, body, _ = self.clients[0].request("GET", f"/v1/payments/{unknown}")
        self.assertEqual((status, body["error"]["code"]), (503, "owner_unavailable"))

    def test_the_same_order_sent_to_all_three_at_once_makes_one_payment(self):
        for n in range(20):
            order_no = f"same-{n}"
            answers = [None] * 3
            start = threading.Barrier(3)

            def send(i):
                client = Client("127.0.0.1", self.buses[i].port)
                start.wait()
                answers[i] = client.pay(order_no, amount=4242)[:2]
                client.close()
            threads = [threading.Thread(target=send, args=(i,)) for i in range(3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            self.assertEqual(sorted(status for status, _ in answers), [200, 200, 202], answers)
            self.assertEqual(len({body["pay_id"] for _, body in answers}), 1, answers)
            # Found by its order number through every instance.
            for client in self.clients:
                status, body, _ = client.request("GET", f"/v1/payments?merchant_order_no={order_no}")
                self.assertEqual((status, body["pay_id"]), (200, answers[0][1]["pay_id"]))
            # Sent again later with another body: the owner says it conflicts, from anywhere.
            for client in self.clients:
                status, body, _ = client.pay(order_no, amount=1)
                self.assertEqual((status, body["error"]["code"]), (409, "idempotency_conflict"))
        wait_for(self, "the twenty orders in PostgreSQL, once each",
                 lambda: self.pg.scalar("SELECT count(*) FROM payment_orders WHERE merchant_order_no "
                                        "LIKE 'same-%'") == "20")
        self.assertEqual(self.pg.scalar("SELECT count(DISTINCT merchant_order_no) FROM payment_orders "
                                        "WHERE merchant_order_no LIKE 'same-%'"), "20")

    def test_creates_and_forwarding_go_on_while_the_database_is_down(self):
        self.pay_round_robin(3, "before")  # every instance has read the slot table
        self.pg.stop()
        made = self.pay_round_robin(30, "down")
        for pay_id in made:
            for client in self.clients:
                status, body, _ = client.request("GET", f"/v1/payments/{pay_id}")
                self.assertEqual((status, body["pay_id"]), (200, pay_id))
        self.pg.start()
        wait_for(self, "the thirty orders in PostgreSQL once the database is back",
                 lambda: self.pg.scalar("SELECT count(*) FROM payment_orders WHERE merchant_order_no "
                                        "LIKE 'down-%'") == "30", timeout=120)

    def test_a_notification_sent_to_the_wrong_instance_reaches_the_owner(self):
        made = self.pay_round_robin(6, "nt")
        for pay_id, created in made.items():
            owner = self.owner_index(pay_id)
            wrong = self.buses[(owner + 1) % 3]
            body = json.dumps({"pay_id": pay_id, "channel_txn_id": f"T-{pay_id}", "status": "SUCCEEDED",
                               "amount": created["amount"],
                               "paid_at": "2026-12-04T00:00:00.000Z"}).encode()
            answer = raw_http(wrong.port, notification("sim-a", "sim-a", body))
            self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer[:200])
            self.assertIn(b'"received":true', answer)
            # Acknowledged only once the owner holds it: it is there at once.
            _, final, _ = self.clients[owner].request("GET", f"/v1/payments/{pay_id}")
            self.assertEqual((final["status"], final["channel_txn_id"]), ("SUCCEEDED", f"T-{pay_id}"))
        wait_for(self, "the six results in PostgreSQL, once each",
                 lambda: self.pg.scalar("SELECT count(*) FROM payment_results WHERE channel_txn_id "
                                        "LIKE 'T-%'") == "6")

    def test_the_admin_console_shows_another_instances_payment(self):
        made = self.pay_round_robin(3, "adm")
        for pay_id in made:
            owner = self.owner_index(pay_id)
            shown = admin_json(self.buses[(owner + 2) % 3], f"payment {pay_id}")  # not the owner
            self.assertEqual(shown["pay_id"], pay_id)

    def slot_owner(self, order_no):
        """The instance index owning the order's slot: formed as slot s -> sorted numbers[s % 3]."""
        return self.numbers.index(sorted(self.numbers)[slot_of("demo", order_no) % 3])

    def test_an_owner_killed_gets_owner_unavailable_then_serves_again(self):
        made = self.pay_round_robin(30, "kill")
        for pay_id, body in made.items():  # each made by its slot's owner
            self.assertEqual(self.owner_index(pay_id), self.slot_owner(body["merchant_order_no"]))
        victim = 2
        survivors = [0, 1]
        number = self.numbers[victim]
        theirs = [pay_id for pay_id in made if self.owner_index(pay_id) == victim]
        self.assertTrue(3 <= len(theirs) <= 20, len(theirs))
        self.buses[victim].kill9()
        for i in survivors:
            self.buses[i].wait_metric(f'paybus_cluster_peer_up{{instance="{number}"}}',
                                      lambda up: up == 0, timeout=60)
        refused = 0
        for i in survivors:
            client = self.clients[i]
            for pay_id in theirs:
                status, body, _ = client.request("GET", f"/v1/payments/{pay_id}")
                self.assertEqual((status, body["error"]["code"]), (503, "owner_unavailable"))
            for pay_id in made:
                if pay_id not in theirs:
                    self.assertEqual(client.request("GET", f"/v1/payments/{pay_id}")[0], 200)
            # Creates: the dead instance's slots are refused, never decided elsewhere; the
            # others' go on.
            for n in range(15):
                order_no = f"while-dead-{i}-{n}"
                status, body, _ = client.pay(order_no)
                if self.slot_owner(order_no) == victim:
                    self.assertEqual((status, body["error"]["code"]), (503, "owner_unavailable"))
                    refused += 1
                else:
                    self.assertEqual(status, 202, body)
        self.assertGreater(refused, 0)
        body = json.dumps({"pay_id": theirs[0], "channel_txn_id": "T-late", "status": "SUCCEEDED",
                           "amount": made[theirs[0]]["amount"],
                           "paid_at": "2026-12-04T00:00:00.000Z"}).encode()
        # At once if the owner is known to be down, else after the forward timeout (5 s).
        answer = raw_http(self.buses[0].port, notification("sim-a", "sim-a", body), timeout=30)
        self.assertTrue(answer.startswith(b"HTTP/1.1 503"), answer[:200])
        self.assertIn(b"owner_unavailable", answer)
        code, out, _ = run_admin(self.buses[1], f"payment {theirs[0]}")
        self.assertNotEqual(code, 0)
        self.assertIn("owner_unavailable", out)
        # Started again with its store (and its cached slot table): served again.
        self.buses[victim].start()
        for i in survivors:
            self.buses[i].wait_metric(f'paybus_cluster_peer_up{{instance="{number}"}}',
                                      lambda up: up == 1, timeout=60)
        answer = raw_http(self.buses[0].port, notification("sim-a", "sim-a", body))
        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer[:200])
        for i in survivors:
            _, final, _ = self.clients[i].request("GET", f"/v1/payments/{theirs[0]}")
            self.assertEqual((final["status"], final["channel_txn_id"]), ("SUCCEEDED", "T-late"))
            for n in range(15):
                order_no = f"while-dead-{i}-{n}"
                status, body, _ = self.clients[i].pay(order_no)
                self.assertIn(status, (200, 202), body)
                self.assertEqual(self.owner_index(body["pay_id"]), self.slot_owner(order_no))


class Adoption(unittest.TestCase):
    """Three instances paying through a channel simulator that answers some payments later by
    notification, a webhook receiver; one instance killed -9 under load and adopted."""

    def setUp(self):
        self.pg = PgCluster()
        self.pg.start()
        self.sim = ChannelSim("sim-a").start()
        self.sim.mode({"accepted_ratio": 0.5, "notify_delay_ms": 1500})
        self.receiver = Receiver()
        addresses = [f"127.0.0.1:{free_port()}" for _ in range(3)]
        self.buses = [Bus(self.pg.url, extra_config=cluster_config(address, addresses),
                          channels={"sim-a": (self.sim.url, 100)},
                          sets=["notify.retry_base_ms=100", "notify.retry_max_ms=400"])
                      for address in addresses]
        for bus in self.buses:
            bus.start()
        self.numbers = [admin_json(bus, "status")["instance_id"] for bus in self.buses]
        for bus, number in zip(self.buses, self.numbers):
            for other in self.numbers:
                if other != number:
                    bus.wait_metric(f'paybus_cluster_peer_up{{instance="{other}"}}',
                                    lambda up: up == 1, timeout=60)
        admin_json(self.buses[0], "cluster form")
        for bus in self.buses:
            bus.wait_metric("paybus_cluster_slot_epoch", lambda epoch: epoch == 1)

    def tearDown(self):
        for bus in self.buses:
            bus.destroy()
        self.sim.stop()
        self.receiver.close()
        self.pg.stop()

    def test_an_instance_killed_under_load_is_adopted_and_loses_nothing(self):
        acknowledged = {}  # order_no -> pay_id
        lock = threading.Lock()
        stop = threading.Event()
        victim, adopter, other = 2, 0, 1

        def load(i):
            client = Client("127.0.0.1", self.buses[i].port, timeout=10)
            n = 0
            while not stop.is_set():
                order_no = f"L-{i}-{n}"
                n += 1
                try:
                    status, body, _ = client.pay(order_no, notify_url=self.receiver.url)
                except OSError:
                    client.close()
                    client = Client("127.0.0.1", self.buses[i].port, timeout=10)
                    continue
                if status in (200, 202):
                    with lock:
                        self.assertNotIn(order_no, acknowledged)
                        acknowledged[order_no] = body["pay_id"]
            client.close()
        threads = [threading.Thread(target=load, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        wait_for(self, "load on every instance",
                 lambda: len({pay_id[13:18] for pay_id in acknowledged.values()}) == 3
                 and len(acknowledged) >= 150)
        self.buses[victim].kill9()
        time.sleep(1)  # the load goes on without it (its own requests fail to connect)
        stop.set()
        for thread in threads:
            thread.join()
        number = self.numbers[victim]
        theirs = {o: p for o, p in acknowledged.items() if int(p[13:18]) == number}
        self.assertGreater(len(theirs), 10)
        self.buses[adopter].wait_metric(f'paybus_cluster_peer_up{{instance="{number}"}}',
                                        lambda up: up == 0, timeout=60)
        some = next(iter(theirs.values()))
        status, body, _ = Client("127.0.0.1", self.buses[other].port).request("GET", f"/v1/payments/{some}")
        self.assertEqual((status, body["error"]["code"]), (503, "owner_unavailable"))

        # A copy of its disk, adopted by a survivor.
        copy = os.path.join(make_temp_dir("adopted"), "store")
        shutil.copytree(os.path.join(self.buses[victim].dir, "data", "store"), copy)
        code, out, _ = run_admin(self.buses[adopter], f"cluster adopt {self.numbers[adopter]} {copy}")
        self.assertNotEqual(code, 0)  # not itself
        adopted = admin_json(self.buses[adopter], f"cluster adopt {number} {copy}")
        self.assertEqual([a["instance_id"] for a in adopted["adopted"]], [number])
        self.assertEqual(adopted["epoch"], 2)
        self.assertEqual(adopted["slots_by_instance"].get(str(number)), None)
        for bus in self.buses[:2]:
            bus.wait_metric("paybus_cluster_slot_epoch", lambda epoch: epoch == 2)
        self.assertEqual(self.pg.query(f"SELECT uri, adopted_by FROM paybus_instances WHERE instance_id = {number}"),
                         [[cluster_address(self.buses[adopter]), str(self.numbers[adopter])]])

        # Every acknowledged payment: served by both survivors, final, once in PostgreSQL,
        # its webhook delivered; no order made twice.
        clients = [Client("127.0.0.1", self.buses[i].port) for i in (adopter, other)]
        for order_no, pay_id in acknowledged.items():
            for client in clients:
                final = wait_status(self, client, pay_id, ("SUCCEEDED", "FAILED"), timeout=90)
                self.assertEqual((final["pay_id"], final["merchant_order_no"]), (pay_id, order_no))
        # Orders the killed instance made durable without answering are there too (a retry
        # gets them back); every acknowledged one is there once, and no order twice.
        acknowledged_ids = "','".join(acknowledged.values())
        wait_for(self, "every acknowledged order and result in PostgreSQL",
                 lambda: self.pg.scalar(f"SELECT count(*) FROM payment_results WHERE pay_id IN "
                                        f"('{acknowledged_ids}')") == str(len(acknowledged)),
                 timeout=120)
        self.assertEqual(self.pg.scalar(f"SELECT count(*) FROM payment_orders WHERE pay_id IN "
                                        f"('{acknowledged_ids}')"), str(len(acknowledged)))
        orders = self.pg.query("SELECT count(*), count(DISTINCT pay_id), "
                               "count(DISTINCT (merchant_id, merchant_order_no)) FROM payment_orders")
        self.assertEqual(len(set(orders[0])), 1, orders)
        results = self.pg.query("SELECT count(*), count(DISTINCT pay_id) FROM payment_results")
        self.assertEqual(len(set(results[0])), 1, results)
        wait_for(self, "every webhook delivered",
                 lambda: set(acknowledged.values()) <= self.receiver.answered_ok, timeout=120)
        # The channel holds one payment per order: no pay_id it was paid under is unknown here.
        held = self.sim.payments()
        known = {r[0] for r in self.pg.query("SELECT pay_id FROM payment_orders")}
        self.assertTrue(set(held) <= known, set(held) - known)
        # Its slots are the adopter's now: an order of theirs sent again is the same payment;
        # a new one is made by the adopter.
        order_no, pay_id = next(iter(theirs.items()))
        status, body, _ = clients[1].pay(order_no, notify_url=self.receiver.url)
        self.assertEqual((status, body["pay_id"]), (200, pay_id))
        for n in range(30):
            order_no = f"after-{n}"
            status, body, _ = clients[1].pay(order_no)
            self.assertEqual(status, 202, body)
            if slot_owner_of(self.numbers, order_no) == number:
                self.assertEqual(int(body["pay_id"][13:18]), self.numbers[adopter])

        # Started again with its old store: fenced, and says so.
        self.buses[victim].process = None
        code, output = run_paybusd(["--config", self.buses[victim].config_path], timeout=60)
        self.assertNotEqual(code, 0)
        self.assertIn(f"instance {number} was adopted by instance {self.numbers[adopter]}", output)
        # With the database down it cannot read that; the adopter tells it, and it stops.
        self.pg.stop()
        code, output = run_paybusd(["--config", self.buses[victim].config_path], timeout=90)
        self.assertNotEqual(code, 0)
        self.assertIn(f"instance {number} was adopted by another instance", output)
        self.pg.start()

        # The adopter restarted serves the adopted store again.
        self.buses[adopter].stop()
        self.buses[adopter].start()
        wait_for(self, "the restarted adopter serving the adopted payments",
                 lambda: Client("127.0.0.1", self.buses[adopter].port).request(
                     "GET", f"/v1/payments/{pay_id}")[0] == 200)


class MutualTls(unittest.TestCase):
    """Peers on the admin port's certificates: two from one CA join, one from another CA is
    refused, and says nothing it should not."""

    def test_peers_need_a_certificate_from_the_ca(self):
        from test_admin import make_ca, make_cert
        pg = PgCluster()
        pg.start()
        directory = make_temp_dir("cluster-tls")
        ca_key, ca = make_ca(directory, "ops-ca")
        other_key, other_ca = make_ca(directory, "other-ca")
        certs = [make_cert(directory, f"bus-{i}", ca_key, ca) for i in range(2)]
        mallory = make_cert(directory, "mallory", other_key, other_ca)
        addresses = [f"127.0.0.1:{free_port()}" for _ in range(3)]
        tls = [(key, cert, ca) for key, cert in certs] + [(mallory[0], mallory[1], other_ca)]
        buses = [Bus(pg.url, extra_config=cluster_config(address, addresses),
                     admin_config=f'certificate = "{cert}"\nkey = "{key}"\ncafile = "{cafile}"\n')
                 for address, (key, cert, cafile) in zip(addresses, tls)]
        try:
            for bus in buses:
                bus.start()
            alice_key, alice_cert = make_cert(directory, "alice", ca_key, ca)
            console = ["--certificate", alice_cert, "--key", alice_key, "--cafile", ca]
            numbers = [admin_json(bus, "status", extra=console)["instance_id"] for bus in buses[:2]]
            buses[0].wait_metric(f'paybus_cluster_peer_up{{instance="{numbers[1]}"}}', lambda up: up == 1)
            buses[1].wait_metric(f'paybus_cluster_peer_up{{instance="{numbers[0]}"}}', lambda up: up == 1)
            self.assertIn("mutual TLS", buses[0].log())
            admin_json(buses[0], "cluster form", extra=console)
            for bus in buses[:2]:
                wait_for(self, "/readyz", lambda: raw_http(bus.port, READYZ).startswith(b"HTTP/1.1 200"))
            made = {}
            for n in range(12):
                status, body, _ = Client("127.0.0.1", buses[n % 2].port).pay(f"tls-{n}")
                self.assertEqual(status, 202, body)
                made[body["pay_id"]] = body
            self.assertEqual({int(p[13:18]) for p in made}, set(numbers))
            for pay_id in made:
                for bus in buses[:2]:
                    self.assertEqual(Client("127.0.0.1", bus.port).request("GET", f"/v1/payments/{pay_id}")[0], 200)
            # The instance with another CA's certificate and the sound ones refuse each other
            # (whoever dials, the other side logs it), and the sound ones' link holds.
            wait_for(self, "the refusal in a log",
                     lambda: any("cluster peer refused: TLS handshake" in bus.log() for bus in buses))
            self.assertNotIn("is down", buses[0].log() + buses[1].log())
            status = admin_json(buses[0], "cluster status", extra=console)
            self.assertEqual(sorted(m["instance_id"] for m in status["members"] if m["up"]), sorted(numbers))
        finally:
            for bus in buses:
                bus.destroy()
            pg.stop()


class Configuration(unittest.TestCase):
    def test_bad_cluster_settings_are_config_errors(self):
        from harness import run_paybusd
        pg_url = "postgresql:///none?host=/nonexistent"
        for extra, key in ((cluster_config("nowhere", []), "cluster.listen"),
                           (cluster_config("10.1.2.3:9100", []), "cluster.listen"),
                           (cluster_config("127.0.0.1:9100", ["no-port"]), "cluster.peers"),
                           ('[cluster]\npeers = ["127.0.0.1:9100"]\n', "cluster.peers")):
            bus = Bus(pg_url, extra_config=extra)
            try:
                code, output = run_paybusd(["--config", bus.config_path])
                self.assertEqual(code, 2, output)
                self.assertIn(f"config error: {key}", output)
            finally:
                bus.destroy()


if __name__ == "__main__":
    unittest.main()
