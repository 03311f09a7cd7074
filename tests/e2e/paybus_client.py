"""A merchant's client for paybus: signs requests exactly as API.md section 3 says."""

import base64
import hashlib
import hmac
import http.client
import json
import os
import secrets
import subprocess
import time


def canonical(method, target, timestamp, nonce, body):
    return "\n".join([method, target, timestamp, nonce, hashlib.sha256(body).hexdigest()])


class Client:
    def __init__(self, host, port, merchant="demo", secret="demo-secret", rsa_key=None, timeout=30):
        self.host, self.port = host, port
        self.merchant, self.secret, self.rsa_key = merchant, secret, rsa_key
        self.timeout = timeout
        self.connection = None

    def headers(self, method, target, body, timestamp=None, nonce=None, signature=None):
        timestamp = str(int(time.time())) if timestamp is None else str(timestamp)
        nonce = nonce or secrets.token_hex(12)
        text = canonical(method, target, timestamp, nonce, body)
        if signature is None:
            if self.rsa_key:
                raw = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.rsa_key],
                                     input=text.encode(), capture_output=True, check=True).stdout
                signature = "rsa-sha256=" + base64.b64encode(raw).decode()
            else:
                digest = hmac.new(self.secret.encode(), text.encode(), hashlib.sha256).hexdigest()
                signature = "hmac-sha256=" + digest
        return {
            "X-Paybus-Merchant": self.merchant,
            "X-Paybus-Timestamp": timestamp,
            "X-Paybus-Nonce": nonce,
            "X-Paybus-Signature": signature,
        }

    def request(self, method, target, body=b"", headers=None, sign=True, **sign_options):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        all_headers = {}
        if sign:
            all_headers.update(self.headers(method, target, body, **sign_options))
        if method == "POST":
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        for attempt in range(2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.connection.request(method, target, body=body if method == "POST" else None,
                                        headers=all_headers)
                response = self.connection.getresponse()
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                try:
                    parsed = json.loads(data) if data else None
                except ValueError:
                    parsed = data.decode(errors="replace")
                return response.status, parsed, response
            except (ConnectionError, http.client.RemoteDisconnected, BrokenPipeError):
                self.close()
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def pay(self, order_no, amount=1999, currency="CNY", **fields):
        body = {"merchant_order_no": order_no, "amount": amount, "currency": currency}
        body.update(fields)
        return self.request("POST", "/v1/payments", body)

    def close(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None
