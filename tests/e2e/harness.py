"""Starts real processes for end-to-end tests: a throwaway PostgreSQL cluster and paybusd."""

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("PAYBUS_BUILD", os.path.join(ROOT, "build"))
PAYBUSD = os.path.join(BUILD, "programs", "paybusd")
PG_CLUSTER = os.path.join(ROOT, "scripts", "pg-cluster")
MAKE_KEYS = os.path.join(ROOT, "scripts", "make-keys")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_temp_dir(name):
    path = tempfile.mkdtemp(prefix="paybus-" + name + "-")
    os.chmod(path, 0o755)
    return path


class PgCluster:
    """A throwaway PostgreSQL listening on a unix socket in a temp dir."""

    def __init__(self, cluster_dir=None):
        self.dir = cluster_dir or make_temp_dir("pg")
        self.url = None

    def start(self):
        out = subprocess.run([PG_CLUSTER, "start", self.dir], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError("pg-cluster start failed: " + out.stderr)
        self.url = out.stdout.strip()
        return self.url

    def stop(self):
        subprocess.run([PG_CLUSTER, "stop", self.dir], capture_output=True)

    def query(self, sql):
        out = subprocess.run(["psql", self.url or self.url_only(), "-XtA", "-F", "|", "-c", sql],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError("psql failed: " + out.stderr)
        return [line.split("|") for line in out.stdout.splitlines() if line]

    def wait_rows(self, sql, timeout=20):
        """The rows of `sql` once there are any, or [] after `timeout` s. A query that fails
        (a table the bus has not created yet, a database still starting) is tried again until
        then; still failing at the deadline, it raises."""
        deadline = time.time() + timeout
        while True:
            try:
                rows = self.query(sql)
            except RuntimeError:
                if time.time() >= deadline:
                    raise
                rows = []
            if rows or time.time() >= deadline:
                return rows
            time.sleep(0.1)

    def scalar(self, sql):
        rows = self.query(sql)
        return rows[0][0] if rows else None

    def url_only(self):
        return subprocess.run([PG_CLUSTER, "url", self.dir], capture_output=True, text=True).stdout.strip()

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


KEYS_DIR = None


def keys_dir():
    """An RSA key pair for the bus and for an rsa-sha256 merchant, made once per run."""
    global KEYS_DIR
    if KEYS_DIR is None:
        KEYS_DIR = make_temp_dir("keys")
        atexit.register(shutil.rmtree, KEYS_DIR, True)
        subprocess.run([MAKE_KEYS, KEYS_DIR, "paybus", "merchant-rsa", "sim-a", "sim-b"], check=True)
    return KEYS_DIR


class Bus:
    """One paybusd process with its own data dir and config."""

    def __init__(self, database_url, data_dir=None, extra_config="", sets=None, channels=None,
                 reconcile_at="", admin_config=""):
        self.dir = data_dir or make_temp_dir("bus")
        self.port = free_port()
        self.admin_port = free_port()
        self.database_url = database_url
        self.sets = list(sets or [])
        keys = keys_dir()
        # channels: {id: (url, weight[, {other key: string value}])}; by default one
        # channel nobody listens on.
        channels = channels if channels is not None else {"sim-a": ("http://127.0.0.1:9", 100)}
        channels_config = "".join(
            f'\n[[channels]]\nid = "{cid}"\nurl = "{url}"\npublic_key = "{keys}/{cid}.pub.pem"\n'
            f'weight = {weight}\ntimeout_ms = 1000\nbreaker_open_ms = 300\n'
            + "".join(f'{key} = "{value}"\n' for key, value in (more[0] if more else {}).items())
            for cid, (url, weight, *more) in channels.items())
        self.config_path = os.path.join(self.dir, "paybus.toml")
        with open(self.config_path, "w") as f:
            f.write(f"""
[node]
data_dir = "{self.dir}/data"
[http]
listen = "127.0.0.1:{self.port}"
public_url = "http://127.0.0.1:{self.port}"
[database]
url = "{database_url}"
connect_timeout_ms = 1000
statement_timeout_ms = 3000
[signing]
private_key = "{keys}/paybus.key.pem"
[admin]
listen = "127.0.0.1:{self.admin_port}"
{admin_config}
[reconciliation]
# No daily run unless a test asks for one: its GET of a statement would be one
# more request to the tests' scripted channels.
at = "{reconcile_at}"

[[merchants]]
id = "demo"
auth = "hmac-sha256"
secret = "demo-secret"

[[merchants]]
id = "other"
auth = "hmac-sha256"
secret = "other-secret"

[[merchants]]
id = "rsa-shop"
auth = "rsa-sha256"
public_key = "{keys}/merchant-rsa.pub.pem"

{channels_config}
{extra_config}
""")
        self.process = None
        self.log_path = os.path.join(self.dir, "paybusd.log")

    def start(self, wait=True):
        command = [PAYBUSD, "--config", self.config_path]
        for item in self.sets:
            command += ["--set", item]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("paybusd exited with %s:\n%s" % (self.process.returncode, self.log()))
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("paybusd did not become healthy:\n" + self.log())

    def stop(self, timeout=30):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise RuntimeError("paybusd did not stop on SIGTERM:\n" + self.log())
        return self.process.returncode if self.process else None

    def kill9(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def metric(self, name):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    return float(line.rsplit(" ", 1)[1])
        return None

    def wait_metric(self, name, predicate, timeout=30):
        deadline = time.time() + timeout
        value = None
        while time.time() < deadline:
            value = self.metric(name)
            if value is not None and predicate(value):
                return value
            time.sleep(0.1)
        raise AssertionError(f"{name} = {value} did not reach the expected value")

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""

    def destroy(self):
        self.kill9()
        shutil.rmtree(self.dir, ignore_errors=True)


def run_paybusd(args, timeout=20):
    """Runs paybusd to completion (for start-up errors); returns (code, output)."""
    out = subprocess.run([PAYBUSD] + args, capture_output=True, text=True, timeout=timeout)
    return out.returncode, out.stdout + out.stderr


def raw_http(port, data, timeout=5, read_all=True):
    """Sends raw bytes and returns everything the bus answers until it closes or times out."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if not read_all:
                    break
        except socket.timeout:
            pass
        return b"".join(chunks)


CHANNEL_SIM = os.path.join(BUILD, "tools", "paybus-channel-sim")
PAYBUS_ADMIN = os.path.join(BUILD, "tools", "paybus-admin")


def run_admin(bus_or_address, *commands, json_output=True, extra=(), timeout=120, stdin=None):
    """Runs paybus-admin with -c for each command; returns (exit code, stdout, stderr)."""
    address = bus_or_address if isinstance(bus_or_address, str) else f"127.0.0.1:{bus_or_address.admin_port}"
    command = [PAYBUS_ADMIN, "--connect", address] + list(extra)
    if json_output:
        command.append("--json")
    for item in commands:
        command += ["-c", item]
    out = subprocess.run(command, capture_output=True, text=True, timeout=timeout, input=stdin)
    return out.returncode, out.stdout, out.stderr


def admin_json(bus, command, **kwargs):
    """One command's JSON answer; fails the test if the command failed."""
    code, out, err = run_admin(bus, command, **kwargs)
    if code != 0:
        raise AssertionError(f"paybus-admin -c {command!r} exited {code}: {err}{out}")
    return json.loads(out)


class ChannelSim:
    """One paybus-channel-sim process."""

    def __init__(self, channel_id, args=(), key_owner=None):
        self.channel_id = channel_id
        self.key_owner = key_owner or channel_id  # another's key: a forger
        self.port = free_port()
        self.admin_port = free_port()
        self.args = list(args)
        self.process = None
        self.dir = make_temp_dir("sim")
        self.log_path = os.path.join(self.dir, "sim.log")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        keys = keys_dir()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [CHANNEL_SIM, "--listen", f"127.0.0.1:{self.port}", "--channel-id", self.channel_id,
                 "--admin", f"127.0.0.1:{self.admin_port}",
                 "--key", f"{keys}/{self.key_owner}.key.pem",
                 "--bus-public-key", f"{keys}/paybus.pub.pem"] + self.args,
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                self.mode({})
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("channel sim did not start")

    def _call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}" + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as r:
            return json.loads(r.read())

    def mode(self, changes):
        return self._call("POST", "/sim/mode", changes)

    def set_down(self, down):
        self.mode({"down": down})

    def payments(self):
        return {p["pay_id"]: p for p in self._call("GET", "/sim/payments")}

    def usage(self):
        return self._call("GET", "/sim/usage")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
