"""Records sealed per data subject (docs/forgetting.md) in the Python readers: each envelope
opens under the subject's key its header names, one under a key without the prefix is
refused, a subject whose key was deleted fails with "subject forgotten" while the others
still open, and unwrapped data keys are dropped after their max age
(python3 -m unittest discover -s demos/python -p "test_*.py"; pytest runs it too)."""
import base64
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hvac.exceptions  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

from envelope_decrypt import EnvelopeError, RecordReader, Unwrapper, open_file  # noqa: E402
from fake_transit import FakeTransit  # noqa: E402
from transit import Transit, TransitError  # noqa: E402
from writer import Writer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PREFIX = "customers-"
OPTIONS = dict(record_keys="encrypt", record_keys_key="customer-ids", headers="seal", keep_headers=["traceparent"],
               bind=["stream", "key"])
HEADERS = [("traceparent", b"00-1-01"), ("tenant", b"a")]


def subject_key(subject: bytes) -> str:
    """A subject's key name as envelope-seal makes it: the prefix and 24 bytes, in hex, of
    an HMAC of the id (here a hash: the readers never compute it)."""
    return PREFIX + hashlib.sha256(subject).digest()[:24].hex()


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def decrypts(vault: FakeTransit, key_name: str) -> int:
    return vault.calls.count(("decrypt", key_name))


class Subjects(unittest.TestCase):
    """RecordReader with subject_keys, against fake_transit's stand-in Vault."""

    def setUp(self):
        self.vault = FakeTransit()
        self.clock = Clock()
        self.writers = {s: Writer(self.vault, subject_key(s), **OPTIONS) for s in (b"alice", b"bob", b"carol")}

    def reader(self, **options):
        return RecordReader(self.vault, subject_keys=PREFIX, record_keys_key="customer-ids",
                            require_binding=["stream", "key"], clock=self.clock, **options)

    def batch(self):
        """Two records of each subject, interleaved: (source, sealed) pairs."""
        out = []
        for n in range(2):
            for subject, writer in self.writers.items():
                value = json.dumps({"customer": subject.decode(), "n": n}).encode()
                out.append(((subject, value), writer.seal("orders", subject, value, HEADERS)))
        return out

    def test_each_envelope_opens_under_its_subjects_key_and_a_forgotten_one_says_so(self):
        batch = self.batch()
        reader = self.reader()
        for (subject, value), sealed in batch:
            self.assertEqual(reader.read("orders", *sealed), (subject, value, HEADERS))
        self.vault.delete_key(subject_key(b"bob"))
        reader = self.reader()  # a reader started after the forget (nothing cached)
        opened, forgotten = [], []
        for (subject, value), sealed in batch:
            try:
                opened.append((reader.read("orders", *sealed), (subject, value, HEADERS)))
            except EnvelopeError as error:
                forgotten.append((subject, error))
        self.assertEqual(len(opened), 4)
        for got, source in opened:
            self.assertEqual(got, source)  # byte-identical: key, value, headers
        self.assertEqual([s for s, _ in forgotten], [b"bob", b"bob"])
        for _, error in forgotten:
            self.assertEqual(error.kind, "forgotten")
            self.assertTrue(str(error).startswith("subject forgotten"), str(error))
            # Neither the id nor the pseudonym in the message.
            self.assertNotIn("bob", str(error))
            self.assertNotIn(subject_key(b"bob"), str(error))
        # Vault's answer is kept like a data key: bob's second record asked nothing.
        self.assertEqual(decrypts(self.vault, subject_key(b"bob")), 2)

    def test_an_envelope_under_a_key_without_the_prefix_is_refused_before_vault(self):
        for key_name in ("orders-1234", "customers", "Customers-" + "a" * 32):
            key, value, headers = Writer(self.vault, key_name, **OPTIONS).seal("orders", b"dave", b"v", [])
            with self.assertRaises(EnvelopeError) as caught:
                self.reader().read("orders", key, value, headers)
            self.assertEqual(caught.exception.kind, "key mismatch")
            self.assertNotIn(key_name, str(caught.exception).replace('"customers-"', ""))
            self.assertEqual(decrypts(self.vault, key_name), 0, key_name)

    def test_without_subject_keys_a_missing_key_is_no_forgotten_subject(self):
        writer = Writer(self.vault, "customers", **OPTIONS)
        sealed = writer.seal("orders", b"k", b"v", [])
        self.vault.delete_key("customers")
        reader = RecordReader(self.vault, key="customers", record_keys_key="customer-ids")
        with self.assertRaises(EnvelopeError) as caught:
            reader.read("orders", *sealed)
        self.assertEqual(caught.exception.kind, "vault")
        self.assertIn("encryption key not found", str(caught.exception))

    def test_a_cached_data_key_is_dropped_after_its_max_age(self):
        name = subject_key(b"bob")
        (_, first), (_, second) = [(s, sealed) for s, sealed in self.batch() if s[0] == b"bob"]
        reader = self.reader()
        reader.read("orders", *first)
        data_key = reader._data_keys.get(name, self.writers[b"bob"]._active.wrapped, None)
        self.clock.now += 59.5
        reader.read("orders", *second)
        self.assertEqual(decrypts(self.vault, name), 1)
        # A forget takes effect once the cached key is 60 s old, not before.
        self.vault.delete_key(name)
        reader.read("orders", *first)
        self.clock.now += 0.5
        with self.assertRaises(EnvelopeError) as caught:
            reader.read("orders", *first)
        self.assertEqual(caught.exception.kind, "forgotten")
        self.assertEqual(decrypts(self.vault, name), 2)
        self.assertEqual(bytes(data_key), bytes(32))  # the dropped key was wiped
        # The max age is the caller's.
        alice = [sealed for s, sealed in self.batch() if s[0] == b"alice"][0]
        reader = self.reader(data_key_max_age=5)
        reader.read("orders", *alice)
        self.clock.now += 4.5
        reader.read("orders", *alice)
        self.clock.now += 0.5
        reader.read("orders", *alice)
        self.assertEqual(decrypts(self.vault, subject_key(b"alice")), 2)
        reader.close()
        self.assertEqual(len(reader._data_keys), 0)

    def test_the_options_are_checked(self):
        for prefix in ("", "a/b-", "p" * 230, "caf\u00e9-", b"customers-"):
            with self.assertRaises(ValueError, msg=prefix):
                RecordReader(self.vault, subject_keys=prefix)
            with self.assertRaises(ValueError, msg=prefix):
                Unwrapper(self.vault, "transit", subject_keys=prefix)
        RecordReader(self.vault, subject_keys="p" * 201)  # and a pseudonym make 249
        with self.assertRaises(ValueError):
            RecordReader(self.vault, key="customers", subject_keys=PREFIX)
        for age in (0, -1):
            with self.assertRaises(ValueError):
                RecordReader(self.vault, subject_keys=PREFIX, data_key_max_age=age)

    def test_vault_values_and_fields_are_not_opened_per_subject(self):
        text = self.vault.encrypt(subject_key(b"alice"), b"secret").encode()
        for read in (lambda r: r.read("orders", b"k", text, []),
                     lambda r: r.read_fields("orders", b"k", json.dumps({"a": text.decode()}).encode())):
            with self.assertRaises(EnvelopeError) as caught:
                read(RecordReader(self.vault, subject_keys=PREFIX))
            self.assertEqual(caught.exception.kind, "config")

    def test_transit_over_http_reports_vaults_key_not_found(self):
        """transit.Transit (requests) against Vault's answer for a deleted key: HTTP 400
        {"errors":["encryption key not found"]}, as OpenBao and vault-dev give it."""
        (_, sealed), *_ = self.batch()
        transit = Transit("http://vault.invalid", "token")

        class Response:
            status_code = 400

            @staticmethod
            def json():
                return {"errors": ["encryption key not found"]}

        asked = []
        transit._session.post = lambda url, **_: asked.append(url) or Response()
        reader = RecordReader(transit, subject_keys=PREFIX, clock=self.clock)
        with self.assertRaises(EnvelopeError) as caught:
            reader.read("orders", *sealed)
        self.assertEqual(caught.exception.kind, "forgotten")
        self.assertEqual(asked, [f"http://vault.invalid/v1/transit/decrypt/{subject_key(b'alice')}"])
        with self.assertRaises(TransitError) as caught:
            transit.decrypt("customers", "vault:v1:x")
        self.assertTrue(caught.exception.key_not_found)


class HvacStandIn:
    """Stands in for hvac's client: transit/decrypt by fake_transit, Vault's refusals as
    hvac raises them (InvalidRequest with Vault's errors, for HTTP 400)."""

    def __init__(self, vault: FakeTransit):
        self.vault = vault
        self.secrets = self
        self.transit = self

    def decrypt_data(self, name, ciphertext, mount_point="transit", **_):
        try:
            plaintext = self.vault.decrypt(name, ciphertext)
        except TransitError as error:
            message = str(error).split(": ", 1)[1]
            raise hvac.exceptions.InvalidRequest(errors=[message], method="post",
                                                 url=f"http://vault/v1/{mount_point}/decrypt/{name}") from None
        return {"data": {"plaintext": base64.b64encode(plaintext).decode()}}


def envelope_v2(vault: FakeTransit, key_name: str, plaintext: bytes) -> bytes:
    """A version 2 envelope (docs/envelope-format.md), as envelope-seal writes without format 3 options."""
    data_key, wrapped = vault.datakey(key_name)
    name = key_name.encode()
    authenticated = bytes([2]) + struct.pack(">H", len(name)) + name
    nonce = os.urandom(12)
    return (authenticated + struct.pack(">H", len(wrapped)) + wrapped.encode() + nonce
            + AESGCM(bytes(data_key)).encrypt(nonce, plaintext, authenticated))


class Unwrapping(unittest.TestCase):
    """Unwrapper (hvac) with subject_keys and a max age."""

    def setUp(self):
        self.vault = FakeTransit()
        self.client = HvacStandIn(self.vault)
        self.clock = Clock()

    def test_subjects_open_a_forgotten_one_says_so_and_other_keys_are_refused(self):
        alice, bob = envelope_v2(self.vault, subject_key(b"alice"), b"a"), envelope_v2(self.vault, subject_key(b"bob"),
                                                                                      b"b")
        other = envelope_v2(self.vault, "orders", b"o")
        self.vault.delete_key(subject_key(b"bob"))
        unwrapper = Unwrapper(self.client, "transit", subject_keys=PREFIX, clock=self.clock)
        self.assertEqual(unwrapper.open(alice), b"a")
        with self.assertRaises(EnvelopeError) as caught:
            unwrapper.open(bob)
        self.assertEqual(caught.exception.kind, "forgotten")
        self.assertTrue(str(caught.exception).startswith("subject forgotten"))
        with self.assertRaises(EnvelopeError) as caught:
            unwrapper.open(other)
        self.assertEqual(caught.exception.kind, "key mismatch")
        self.assertEqual(decrypts(self.vault, "orders"), 0)
        self.assertEqual(unwrapper.vault_requests, 2)
        # Without subject_keys, Vault's refusals stay hvac's (.ci/e2e/rotation.sh expects them).
        with self.assertRaises(hvac.exceptions.InvalidRequest):
            Unwrapper(self.client, "transit").open(bob)
        self.assertEqual(Unwrapper(self.client, "transit").open(other), b"o")

    def test_a_cached_data_key_is_dropped_after_its_max_age(self):
        name = subject_key(b"alice")
        alice = envelope_v2(self.vault, name, b"a")
        unwrapper = Unwrapper(self.client, "transit", subject_keys=PREFIX, data_key_max_age=30, clock=self.clock)
        unwrapper.open(alice)
        self.clock.now += 29.5
        self.vault.delete_key(name)
        self.assertEqual(unwrapper.open(alice), b"a")
        self.clock.now += 0.5
        with self.assertRaises(EnvelopeError) as caught:
            unwrapper.open(alice)
        self.assertEqual(caught.exception.kind, "forgotten")
        self.assertEqual(unwrapper.vault_requests, 2)


def record_line(topic, key, value, headers, **more) -> dict:
    hx = lambda b: None if b is None else bytes(b).hex()  # noqa: E731
    return dict({"topic": topic, "key": hx(key), "value": hx(value), "headers": [[n, hx(v)] for n, v in headers]},
                **more)


class StandInVaultServer:
    """fake_transit behind Vault's HTTP API (transit/decrypt only), for the CLIs: 200
    {"data": {"plaintext": ...}}, or 400 {"errors": [...]} as Vault answers."""

    def __init__(self, vault: FakeTransit):
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                name = self.path.rsplit("/", 1)[1]
                try:
                    answer = {"data": {"plaintext": base64.b64encode(vault.decrypt(
                        name, body["ciphertext"],
                        context=base64.b64decode(body["context"]) if "context" in body else None)).decode()}}
                    status = 200
                except TransitError as error:
                    answer, status = {"errors": [str(error).split(": ", 1)[1]]}, 400
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class RecordsFile(unittest.TestCase):
    """The records-file entry points: envelope_decrypt.open_file and its CLI (open-file),
    and records_check.py, with --subject-keys."""

    def setUp(self):
        self.vault = FakeTransit()
        writers = {s: Writer(self.vault, subject_key(s), **OPTIONS) for s in (b"alice", b"bob", b"carol")}
        self.sources, self.lines = [], []
        for n in range(3):
            for subject, writer in writers.items():
                value = b"%s's record %d" % (subject, n)
                sealed = writer.seal("orders", subject, value, HEADERS)
                self.sources.append((subject, value))
                self.lines.append(record_line("orders", *sealed, partition=0, offset=len(self.lines)))
        stranger = Writer(self.vault, "orders-key", **OPTIONS).seal("orders", b"dave", b"v", [])
        self.lines.append(record_line("orders", *stranger, partition=0, offset=len(self.lines)))
        self.vault.delete_key(subject_key(b"bob"))
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def check_out(self, out: list) -> None:
        self.assertEqual(len(out), 10)
        for line, (subject, value), source in zip(out, self.sources, self.lines):
            self.assertEqual((line["partition"], line["offset"]), (source["partition"], source["offset"]))
            if subject == b"bob":
                self.assertTrue(line["error"].startswith("subject forgotten"), line)
                self.assertEqual(line["kind"], "forgotten")
                self.assertNotIn("value", line)
                self.assertEqual((line["key"], line["headers"]), (source["key"], source["headers"]))
            else:
                self.assertEqual(line, record_line("orders", subject, value, HEADERS, partition=0,
                                                   offset=source["offset"]))
        self.assertEqual(out[9]["kind"], "key mismatch")
        self.assertNotIn("orders-key", out[9]["error"])

    def test_open_file(self):
        reader = RecordReader(self.vault, subject_keys=PREFIX, record_keys_key="customer-ids",
                              require_binding=["stream", "key"])
        out, counts = open_file([json.dumps(line) for line in self.lines] + [""], reader)
        self.assertEqual(counts, {"records": 10, "opened": 6, "forgotten": 3, "errors": 1})
        self.check_out(out)
        self.assertEqual(decrypts(self.vault, subject_key(b"bob")), 1)

    def run_cli(self, *args):
        server = StandInVaultServer(self.vault)
        self.addCleanup(server.close)
        # The stand-in only: no proxy, TLS or namespace a CI environment may have set.
        env = {n: v for n, v in os.environ.items() if n not in ("VAULT_CACERT", "VAULT_NAMESPACE")}
        env.update(VAULT_ADDR=server.address, VAULT_TOKEN="token", NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
        return subprocess.run([sys.executable, *args], cwd=HERE, env=env, capture_output=True, text=True, timeout=60)

    def test_the_open_file_command(self):
        records, opened = os.path.join(self.tmp.name, "in.jsonl"), os.path.join(self.tmp.name, "out.jsonl")
        with open(records, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(line) + "\n" for line in self.lines)
        done = self.run_cli("envelope_decrypt.py", "open-file", "--in", records, "--out", opened,
                            "--subject-keys", PREFIX, "--record-keys-key", "customer-ids",
                            "--require-binding", "stream", "key")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("10 records", done.stdout)
        self.assertIn("6 opened, 3 of forgotten subjects, 1 could not be opened otherwise", done.stdout)
        with open(opened, encoding="utf-8") as handle:
            self.check_out([json.loads(line) for line in handle])
        refused = self.run_cli("envelope_decrypt.py", "open-file", "--in", records, "--out", opened,
                               "--key", "customers", "--subject-keys", PREFIX)
        self.assertNotEqual(refused.returncode, 0)
        refused = self.run_cli("envelope_decrypt.py", "open-file", "--in", records, "--out", opened,
                               "--subject-keys", "a/b")
        self.assertIn("not the prefix of transit key names", refused.stderr)

    def test_records_check(self):
        records = os.path.join(self.tmp.name, "readers.jsonl")
        with open(records, "w", encoding="utf-8") as handle:
            for line, (subject, value) in zip(self.lines, self.sources):
                if subject == b"bob":
                    line = dict(line, refuse="forgotten")
                else:
                    line = dict(line, expect=record_line("orders", subject, value, HEADERS))
                handle.write(json.dumps(line) + "\n")
            handle.write(json.dumps(dict(self.lines[-1], refuse="key mismatch")) + "\n")
        done = self.run_cli("records_check.py", records, "--subject-keys", PREFIX)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        lines = done.stdout.splitlines()
        self.assertIn("6 records read back byte-identical", lines[0])
        self.assertIn("4 refused as expected", lines[0])
        self.assertIn("3 of forgotten subjects", lines[0])
        errors = [line for line in lines if line.startswith("error: ")]
        self.assertEqual(len(errors), 3)
        self.assertTrue(all(line.split(": ", 2)[2].startswith("subject forgotten") for line in errors), errors)


if __name__ == "__main__":
    unittest.main()
