"""Format 3 in Python: the writer's records open in the reader, and every way of moving,
swapping or re-keying a ciphertext is refused for its reason
(python3 -m unittest discover -s demos/python -p "test_*.py"; pytest runs it too)."""
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from envelope_decrypt import PROTECTION_HEADER, EnvelopeError, RecordReader  # noqa: E402
from fake_transit import FakeTransit  # noqa: E402
from writer import Writer  # noqa: E402

VECTORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "envelope-test-vectors.json")
EVERY_OPTION = dict(record_keys="encrypt", record_keys_key="customer-ids", headers="seal", keep_headers=["traceparent"],
                    bind=["stream", "key"], compression="zstd", pad_to=256)
HEADERS = [("traceparent", b"00-1-01"), ("tenant", b"a"), ("tenant", b"b"), ("flag", None)]


class Format3(unittest.TestCase):
    def setUp(self):
        self.vault = FakeTransit()
        self.writer = Writer(self.vault, "customers", **EVERY_OPTION)
        self.reader = RecordReader(self.vault, key="customers", record_keys_key="customer-ids",
                                   require_binding=["stream", "key"])

    def refused(self, kind, topic, key, value, headers, reader=None):
        with self.assertRaises(EnvelopeError) as caught:
            (reader or self.reader).read(topic, key, value, headers)
        self.assertEqual(caught.exception.kind, kind, str(caught.exception))
        return caught.exception

    def test_every_option_round_trips_and_hides_the_headers(self):
        value = json.dumps({"total": 12, "notes": "x" * 300}).encode()
        key, sealed, headers = self.writer.seal("orders", b"customer-42", value, HEADERS)
        self.assertTrue(key.startswith(b"vault:v1:"))
        self.assertEqual([n for n, _ in headers], ["traceparent", PROTECTION_HEADER])
        self.assertEqual(dict(headers)[PROTECTION_HEADER], b"3;5f")
        self.assertEqual((len(sealed) - 50 - len("customers") - len(self.writer._active.wrapped) - 16) % 256, 0)
        # Convergent: the same key on the same stream gives the same sink key (partitioning, compaction).
        self.assertEqual(self.writer.seal("orders", b"customer-42", b"v", [])[0], key)
        self.assertEqual(self.reader.read("orders", key, sealed, headers),
                         (b"customer-42", value, [("traceparent", b"00-1-01")] + HEADERS[1:]))

    def test_a_moved_record_is_refused(self):
        key, sealed, headers = self.writer.seal("orders", b"customer-42", b"v", HEADERS)
        self.refused("authentication", "payments", key, sealed, headers)
        # A reader configured with the stream reads it wherever it was copied to.
        copied = RecordReader(self.vault, key="customers", record_keys_key="customer-ids", stream="orders")
        self.assertEqual(copied.read("orders.mirror", key, sealed, headers)[1], b"v")

    def test_a_value_swapped_between_keys_is_refused(self):
        key1, sealed1, headers1 = self.writer.seal("orders", b"customer-1", b"one", [])
        key2, _, _ = self.writer.seal("orders", b"customer-2", b"two", [])
        self.refused("authentication", "orders", key2, sealed1, headers1)
        self.refused("authentication", "orders", None, sealed1, headers1)

    def test_a_rekeyed_envelope_is_refused_by_its_commitment(self):
        _, first, headers = self.writer.seal("orders", b"k", b"one", [])
        other = Writer(self.vault, "customers", **EVERY_OPTION)
        key, second, _ = other.seal("orders", b"k", b"two", [])
        wrapped_at = 4 + len("customers") + 32
        # first's body under second's wrapped key: unwraps to another data key.
        w1 = int.from_bytes(first[wrapped_at:wrapped_at + 2], "big")
        w2 = int.from_bytes(second[wrapped_at:wrapped_at + 2], "big")
        forged = first[:wrapped_at] + second[wrapped_at:wrapped_at + 2 + w2] + first[wrapped_at + 2 + w1:]
        self.refused("commitment", "orders", key, forged, headers)

    def test_stripped_or_edited_protection_headers_are_refused(self):
        key, sealed, headers = self.writer.seal("orders", b"k", b"v", HEADERS)
        kept = [(n, v) for n, v in headers if n != PROTECTION_HEADER]
        self.refused("unbound", "orders", key, sealed, kept)
        lenient = RecordReader(self.vault, key="customers", record_keys_key="customer-ids")
        self.refused("flags", "orders", key, sealed, kept, reader=lenient)
        self.refused("flags", "orders", key, sealed, kept + [(PROTECTION_HEADER, b"3;5b")])
        self.refused("flags", "orders", key, sealed, headers + [(PROTECTION_HEADER, b"3;5f")])

    def test_require_binding_refuses_unbound_records(self):
        loose = Writer(self.vault, "customers", bind=["stream"])
        key, sealed, headers = loose.seal("orders", b"k", b"v", [])
        error = self.refused("unbound", "orders", key, sealed, headers)
        self.assertIn("key", str(error))
        self.assertEqual(RecordReader(self.vault, require_binding=["stream"]).read("orders", key, sealed, headers)[1],
                         b"v")

    def test_vault_values_and_fields_are_bound(self):
        from envelope_decrypt import STREAM, KEY, binding, protection_header_value
        flags = STREAM | KEY
        text = self.vault.encrypt("customers", b"secret", associated_data=binding(flags, "orders", b"k")).encode()
        headers = [(PROTECTION_HEADER, protection_header_value(flags))]
        self.assertEqual(self.reader.read("orders", b"k", text, headers)[1], b"secret")
        self.refused("authentication", "payments", b"k", text, headers)
        field = self.vault.encrypt("customers", b'"123-45-6789"',
                                   associated_data=binding(flags, "orders", b"k", "/ssn"))
        document = json.dumps({"name": "Ada", "ssn": field, "other": field}).encode()
        with self.assertRaises(EnvelopeError) as caught:  # "/other" is not where it was encrypted
            self.reader.read_fields("orders", b"k", document, protection_header_value(flags))
        self.assertEqual(caught.exception.kind, "authentication")
        document = json.dumps({"name": "Ada", "ssn": field}).encode()
        self.assertEqual(json.loads(self.reader.read_fields("orders", b"k", document, protection_header_value(flags))),
                         {"name": "Ada", "ssn": "123-45-6789"})

    def test_tombstones_keep_their_key_and_drop_sealed_headers(self):
        key, value, headers = self.writer.seal("orders", b"k", None, HEADERS)
        self.assertIsNone(value)
        self.assertEqual(self.reader.read("orders", key, value, headers), (b"k", None, [("traceparent", b"00-1-01")]))

    def test_data_keys_are_retired_after_max_records_and_wiped(self):
        writer = Writer(self.vault, "customers", bind=["stream"], max_records=2)
        for _ in range(5):
            writer.seal("orders", None, b"v", [])
        self.assertEqual(writer.data_keys_minted, 3)
        active = writer._active
        writer.close()
        self.assertEqual(bytes(active.material), bytes(32))

    def test_lz4_and_hmac_keys(self):
        writer = Writer(self.vault, "customers", record_keys="hmac", record_keys_key="customer-ids",
                        bind=["stream", "key"], compression="lz4", pad_to=32)
        key, sealed, headers = writer.seal("orders", b"k", b"a" * 1000, [])
        self.assertEqual(key, writer.seal("orders", b"k", b"b", [])[0])
        self.assertEqual(self.reader.read("orders", key, sealed, headers), (key, b"a" * 1000, []))

    def test_the_published_vectors(self):
        from envelope_decrypt import check_vectors
        from writer import check_vectors as check_sealing
        check_vectors(VECTORS)
        check_sealing(VECTORS)


if __name__ == "__main__":
    unittest.main()
