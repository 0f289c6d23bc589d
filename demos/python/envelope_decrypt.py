"""Reference decryptor for kafka-transit envelopes (docs/envelope-format.md) and format 3
records (docs/protected-records.md: the protection header, binding data, sealed headers,
compression and padding; `RecordReader` reads whole records, `writer.py` writes them).

No kafka-transit code: the data key is unwrapped by Vault's transit/decrypt (through
hvac) and the record is opened with AES-256-GCM from `cryptography`. It shows that any
language with a Vault client and an AES-GCM library can read what kafka-transit wrote.

    # check the published test vectors (no Vault, no Kafka)
    python3 envelope_decrypt.py vectors docs/envelope-test-vectors.json

    # read envelopes from a topic, unwrap data keys with Vault (VAULT_ADDR, VAULT_TOKEN)
    python3 envelope_decrypt.py topic --bootstrap 127.0.0.1:9092 --topic customers.sealed \
        --count 100 [--mount transit] [--expect records.tsv] [--show 3] [--subject-keys customers-]

    # read a file of records (demos/lib/record_file.py dump) with RecordReader
    python3 envelope_decrypt.py open-file --in sealed.jsonl --out opened.jsonl \
        (--key customers | --subject-keys customers-) [--record-keys-key customer-ids] \
        [--require-binding stream key] [--stream S] [--mount transit] [--data-key-max-age 60]

Records sealed per data subject (docs/forgetting.md) name their subject's transit key,
`<subject_keys><pseudonym>`: with `subject_keys` (`--subject-keys`) a reader opens each
envelope under the key its header names when the name starts with that prefix, and
refuses any other; once `kafka-transit forget` deleted a subject's key, its records fail
with EnvelopeError kind "forgotten", whose message starts "subject forgotten". Unwrapped
data keys are cached for at most `data_key_max_age` seconds (60 by default), so a forget
reaches a running reader within that bound.
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import struct
import sys
import time

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# Version 2 is written without format 3 options; version 1 (whose tag also covers the
# wrapped key) is still read; version 3 carries flags and a key commitment.
FORMAT_VERSION = 2
FORMAT_VERSION_3 = 3
FORMAT_VERSIONS = (1, 2, 3)
COMMITMENT_LEN = 32
COMMITMENT_MESSAGE = b"kafka-transit/3 key commitment"
NONCE_LEN = 12
TAG_LEN = 16
# The longest transit key name (and Kafka topic name) kafka-transit accepts.
MAX_KEY_NAME_LEN = 249
KEY_NAME_CHARACTERS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
# What Vault and OpenBao answer (HTTP 400) to transit/decrypt/<name> when they have no key
# <name>, e.g. once `kafka-transit forget` deleted a data subject's (vault-dev mimics it).
KEY_NOT_FOUND = "encryption key not found"
# How every forgotten-subject error starts, here as in the runners' dead letters and the
# Java and Go readers, so that whoever counts them can tell them from any other failure.
FORGOTTEN = "subject forgotten"
# The characters of the pseudonym after a subject key's prefix (docs/forgetting.md).
SUBJECT_NAME_CHARS = 48
# How long an unwrapped data key is used before Vault is asked again: the bound within
# which a forgotten subject's records stop opening in a running reader.
DEFAULT_DATA_KEY_MAX_AGE = 60.0
# Unwrapped data keys a reader keeps at most.
DATA_KEY_CACHE_ENTRIES = 1000


class EnvelopeError(Exception):
    """A value that is not a readable envelope or record. `kind` is what failed, as the
    test vectors' `expect` names it: "version", "truncated", "key name", "authentication",
    and for format 3 "flags", "commitment", "padding", "decompression", "too large",
    "frame", "unbound" ("malformed" otherwise); besides: "key mismatch" (sealed under a key
    this reader does not open), "forgotten" (its data subject's key was deleted: the
    message starts "subject forgotten"), "vault" and "config"."""

    def __init__(self, message: str, kind: str = "malformed"):
        super().__init__(message)
        self.kind = kind


def key_name_problem(name: bytes):
    """Why `name` is not a transit key name (1 to 249 of A-Z a-z 0-9 . _ -, not "." or
    "..", the one rule of kafka-transit), or None if it is one. A key name read from a
    record becomes the path of a Vault request (transit/decrypt/<key name>; hvac formats it
    in as it is, and ".." climbs, "/" nests), so any other name must be refused before
    asking Vault, without repeating it: it is record data."""
    if not name:
        return "it is empty"
    if len(name) > MAX_KEY_NAME_LEN:
        return "it is longer than 249 characters"
    if name in (b".", b".."):
        return "'.' and '..' are not names"
    if not KEY_NAME_CHARACTERS.issuperset(name):
        return "only letters, digits, '.', '_' and '-' are allowed"
    return None


def check_key_name(name: bytes) -> str:
    """An envelope's key name as text, if it is a transit key name (see key_name_problem)."""
    reason = key_name_problem(name)
    if reason:
        raise EnvelopeError(f"not a kafka-transit envelope: the key name is not a transit key name ({reason})",
                            "key name")
    return name.decode("ascii")


def check_subject_keys(prefix: str) -> str:
    """`subject_keys`, the prefix of data subjects' transit key names, if a prefix and a
    pseudonym's 48 hex characters make a transit key name (the runners check it alike)."""
    if not isinstance(prefix, str) or not prefix or key_name_problem((prefix + "a" * SUBJECT_NAME_CHARS).encode()):
        raise ValueError(f"subject_keys: {prefix!r} is not the prefix of transit key names (the one the sealing "
                         "pipeline has, e.g. \"customers-\")")
    return prefix


def check_subject_key(key_name: str, subject_keys) -> None:
    """A reader of subjects' records opens nothing else: an envelope under a key without the
    prefix is refused before Vault is asked, rather than opened under whatever key the
    record names. The message does not quote the name: the producer wrote it."""
    if subject_keys is not None and not key_name.startswith(subject_keys):
        raise EnvelopeError(f"the envelope was not sealed under a data subject's key (subject_keys = "
                            f"\"{subject_keys}\")", "key mismatch")


def subject_forgotten() -> EnvelopeError:
    """What Vault's "encryption key not found" means for an envelope under a subject's key.
    The message says neither the subject nor its key's name (the caller has the record)."""
    return EnvelopeError(f"{FORGOTTEN}: the transit key of this record's data subject no longer exists (kafka-transit "
                         "forget deleted it); the record cannot be opened by anyone", "forgotten")


class DataKeyCache:
    """Unwrapped data keys by (key name, wrapped key), each used for at most `max_age`
    seconds and then unwrapped again, so that a subject forgotten in Vault stops opening in
    a running reader within that bound; at most `max_entries` of them. Dropped keys are
    zeroed. Vault's answer that a subject's key is gone is kept the same way, for as long:
    a forgotten subject's records then cost no Vault request each. `clock` gives monotonic
    seconds (tests pass their own)."""

    def __init__(self, max_age: float = DEFAULT_DATA_KEY_MAX_AGE, max_entries: int = DATA_KEY_CACHE_ENTRIES,
                 clock=time.monotonic):
        if not max_age > 0:
            raise ValueError(f"data_key_max_age: {max_age!r} is not a number of seconds above 0")
        self.max_age, self.max_entries, self.clock = max_age, max_entries, clock
        # (key name, wrapped key) -> (when it was unwrapped, the data key or None: forgotten),
        # in the order they were unwrapped, so the oldest (and so the expired) come first.
        self._entries = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key_name: str, wrapped: str, unwrap) -> bytearray:
        """The data key, from the cache or from `unwrap()` (which raises subject_forgotten()
        for a forgotten subject)."""
        now = self.clock()
        entry = self._entries.get((key_name, wrapped))
        if entry is not None and now - entry[0] < self.max_age:
            if entry[1] is None:
                raise subject_forgotten()
            return entry[1]
        if entry is not None:
            # Expired: unwrapped again below, and put last, where the youngest are.
            self._evict((key_name, wrapped))
        self._drop(now)
        try:
            data_key = unwrap()
        except EnvelopeError as error:
            if error.kind == "forgotten":
                self._entries[(key_name, wrapped)] = (now, None)
            raise
        self._entries[(key_name, wrapped)] = (now, data_key)
        return data_key

    def _drop(self, now: float) -> None:
        """Drops the expired entries, and the oldest while there is no room for one more."""
        while self._entries:
            oldest = next(iter(self._entries))
            if now - self._entries[oldest][0] < self.max_age and len(self._entries) < self.max_entries:
                return
            self._evict(oldest)

    def _evict(self, entry) -> None:
        _, data_key = self._entries.pop(entry)
        if data_key is not None:
            data_key[:] = bytes(len(data_key))

    def close(self) -> None:
        for entry in list(self._entries):
            self._evict(entry)


def parse(envelope: bytes):
    """Returns (key_name, wrapped_key, authenticated, nonce, ciphertext_and_tag), where
    `authenticated` is the part of the header the tag covers. See parse_header for
    version 3's flags and commitment."""
    header = parse_header(envelope)
    return header["key_name"], header["wrapped_key"], header["authenticated"], header["nonce"], header["sealed"]


def parse_header(envelope: bytes) -> dict:
    """An envelope's fields: version, flags (0 before version 3), key_name, commitment
    (None before version 3), wrapped_key, authenticated, nonce, sealed."""
    if not envelope:
        raise EnvelopeError("truncated: an empty value", "truncated")
    if envelope[0] not in FORMAT_VERSIONS:
        raise EnvelopeError("not a kafka-transit envelope (unknown format version)", "version")
    at, flags, commitment = 1, 0, None
    if envelope[0] == FORMAT_VERSION_3:
        if len(envelope) < 2:
            raise EnvelopeError("truncated in the flags", "truncated")
        flags = check_flags(envelope[1], "the envelope")
        at = 2
    fields, ends = [], []
    for what in ("key name", "wrapped key"):
        if len(envelope) < at + 2:
            raise EnvelopeError(f"truncated in the {what}", "truncated")
        (length,) = struct.unpack_from(">H", envelope, at)
        if len(envelope) < at + 2 + length:
            raise EnvelopeError(f"truncated in the {what}", "truncated")
        field = envelope[at + 2 : at + 2 + length]
        if what == "key name":
            fields.append(check_key_name(field))
            if envelope[0] == FORMAT_VERSION_3:
                start = at + 2 + length
                commitment = envelope[start : start + COMMITMENT_LEN]
                if len(commitment) < COMMITMENT_LEN:
                    raise EnvelopeError("truncated in the key commitment", "truncated")
                at += COMMITMENT_LEN
        else:
            try:
                fields.append(field.decode("ascii"))
            except UnicodeDecodeError:
                raise EnvelopeError("not a kafka-transit envelope: the wrapped key is not text") from None
        at += 2 + length
        ends.append(at)
    # Versions 2 and 3 leave the wrapped key out of the tag, so that it can be rewrapped.
    authenticated = envelope[: ends[0] if envelope[0] == 2 else ends[1] - 2 - len(fields[1]) if envelope[0] == 3
                             else ends[1]]
    rest = envelope[at:]
    if len(rest) < NONCE_LEN + TAG_LEN:
        raise EnvelopeError("truncated before the tag", "truncated")
    return {"version": envelope[0], "flags": flags, "key_name": fields[0], "commitment": commitment,
            "wrapped_key": fields[1], "authenticated": authenticated, "nonce": rest[:NONCE_LEN],
            "sealed": rest[NONCE_LEN:]}


def open_with(data_key: bytes, envelope: bytes, aad: bytes = b"", max_plaintext: int = None) -> bytes:
    """Opens an envelope with its data key; `aad` is the caller associated data (for
    version 3: the record's binding parts, binding[16:]). A version 3 envelope's commitment
    is checked before its tag, and its body unpadded and decompressed (at most
    `max_plaintext` bytes)."""
    header = parse_header(envelope)
    if header["commitment"] is not None and not hmac.compare_digest(header["commitment"], commitment_of(data_key)):
        raise EnvelopeError("the envelope's key commitment does not match its data key (its wrapped key was "
                            "swapped for another data key's)", "commitment")
    try:
        opened = AESGCM(data_key).decrypt(header["nonce"], header["sealed"], header["authenticated"] + aad)
    except InvalidTag:
        raise EnvelopeError("envelope failed authentication (tampered, moved to another stream or key, or "
                            "wrong associated data)", "authentication") from None
    if header["version"] != FORMAT_VERSION_3:
        return opened
    return decode_body(opened, header["flags"], DEFAULT_MAX_PLAINTEXT if max_plaintext is None else max_plaintext)


# --- format 3 (docs/protected-records.md) ---------------------------------------------

PROTECTION_HEADER = "kafka-transit.protection"
BINDING_PREFIX = b"kafka-transit/3"
STREAM, KEY, HEADERS, PADDED = 0x01, 0x02, 0x04, 0x08
COMPRESSION_MASK, ZSTD, LZ4 = 0x30, 0x10, 0x20
RECORD_KEYS_MASK, KEYS_ENCRYPTED, KEYS_HMAC = 0xC0, 0x40, 0x80
# What a reader decompresses a record to at most, unless told otherwise (the host's is
# pipeline.max_record_bytes).
DEFAULT_MAX_PLAINTEXT = 16 << 20


def commitment_of(data_key: bytes) -> bytes:
    return hmac.new(data_key, COMMITMENT_MESSAGE, hashlib.sha256).digest()


def check_flags(byte: int, where: str) -> int:
    if byte & COMPRESSION_MASK == COMPRESSION_MASK or byte & RECORD_KEYS_MASK == RECORD_KEYS_MASK:
        raise EnvelopeError(f"{where} has unknown flags 0x{byte:02x}", "flags")
    return byte


def parse_protection_header(value) -> int:
    """The flags of a kafka-transit.protection header value ("3;" and two lowercase hex digits)."""
    if isinstance(value, str):
        value = value.encode()
    if not value.startswith(b"3;"):
        raise EnvelopeError(f"the {PROTECTION_HEADER} header names an unknown format", "flags")
    digits = value[2:]
    if len(digits) != 2 or not all(c in b"0123456789abcdefABCDEF" for c in digits):
        raise EnvelopeError(f'the {PROTECTION_HEADER} header is not "3;" and two hex digits', "flags")
    return check_flags(int(digits, 16), f"the {PROTECTION_HEADER} header")


def protection_header_value(flags: int) -> bytes:
    return b"3;%02x" % flags


def binding(flags: int, stream: str, key, pointer: str = None) -> bytes:
    """What a format 3 ciphertext authenticates besides itself: prefix ‖ flags ‖ [u16 stream]
    ‖ [0x00 null key | 0x01 u32 key] ‖ [u32 JSON Pointer]."""
    data = bytearray(BINDING_PREFIX + bytes([flags]))
    if flags & STREAM:
        name = stream.encode()
        data += struct.pack(">H", len(name)) + name
    if flags & KEY:
        data += b"\x00" if key is None else b"\x01" + struct.pack(">I", len(key)) + bytes(key)
    if pointer is not None:
        data += struct.pack(">I", len(pointer.encode())) + pointer.encode()
    return bytes(data)


def frame(headers, value: bytes) -> bytes:
    out = bytearray(struct.pack(">I", len(headers)))
    for name, header_value in headers:
        out += struct.pack(">I", len(name.encode())) + name.encode()
        out += struct.pack(">i", -1) if header_value is None else struct.pack(">i", len(header_value)) + header_value
    return bytes(out + value)


def unframe(data: bytes):
    """(sealed headers as [(name, value or None)], value) of a frame."""
    short = EnvelopeError("the sealed headers' frame ends too soon", "frame")
    if len(data) < 4:
        raise short
    (count,) = struct.unpack_from(">I", data)
    at = 4
    if count > (len(data) - at) // 8:
        raise short
    headers = []
    for _ in range(count):
        if len(data) < at + 4:
            raise short
        (length,) = struct.unpack_from(">I", data, at)
        at += 4
        if len(data) < at + length + 4:
            raise short
        try:
            name = data[at : at + length].decode("utf-8")
        except UnicodeDecodeError:
            raise EnvelopeError("the sealed headers' frame holds a header name that is not UTF-8", "frame") from None
        at += length
        (length,) = struct.unpack_from(">i", data, at)
        at += 4
        if length == -1:
            headers.append((name, None))
            continue
        if length < 0:
            raise EnvelopeError("the sealed headers' frame holds a negative value length", "frame")
        if len(data) < at + length:
            raise short
        headers.append((name, data[at : at + length]))
        at += length
    return headers, data[at:]


def pad(data: bytes, pad_to: int) -> bytes:
    unpadded = struct.pack(">I", len(data)) + data
    return unpadded + bytes(-len(unpadded) % pad_to)


def unpad(data: bytes) -> bytes:
    if len(data) < 4:
        raise EnvelopeError("the padding ends too soon", "padding")
    (length,) = struct.unpack_from(">I", data)
    if length > len(data) - 4:
        raise EnvelopeError("the padding gives a length past the end", "padding")
    if any(data[4 + length :]):
        raise EnvelopeError("the padding is not zeros", "padding")
    return data[4 : 4 + length]


def decode_body(opened: bytes, flags: int, max_plaintext: int) -> bytes:
    """A version 3 plaintext unpadded and decompressed, never expanded past max_plaintext."""
    data = unpad(opened) if flags & PADDED else opened
    compression = flags & COMPRESSION_MASK
    if compression == ZSTD:
        import zstandard

        try:
            reader = zstandard.ZstdDecompressor().stream_reader(data)
            out = reader.read(max_plaintext + 1)
            # read() may stop early at a frame's block boundary: keep going to the limit.
            while len(out) <= max_plaintext:
                more = reader.read(max_plaintext + 1 - len(out))
                if not more:
                    break
                out += more
        except zstandard.ZstdError as error:
            raise EnvelopeError(f"the body is not a zstd frame: {error}", "decompression") from None
    elif compression == LZ4:
        import lz4.frame

        try:
            decompressor = lz4.frame.LZ4FrameDecompressor()
            out = decompressor.decompress(data, max_length=max_plaintext + 1)
            if len(out) <= max_plaintext and not decompressor.eof:
                raise EnvelopeError("the body is not a whole LZ4 frame", "decompression")
        except RuntimeError as error:
            raise EnvelopeError(f"the body is not an LZ4 frame: {error}", "decompression") from None
    else:
        return data
    if len(out) > max_plaintext:
        raise EnvelopeError(f"the body decompresses to more than {max_plaintext} bytes", "too large")
    return out


def record_flags(value, protection_header, require_binding=()):
    """Step 1 and 2 of docs/protected-records.md "What each reader must check": the
    record's flags from its protection header (None: format 1 or 2), refusing unknown or
    mismatched flags and records not bound as `require_binding` ("stream", "key") asks."""
    if protection_header is None:
        if require_binding:
            raise EnvelopeError(f"the record is not bound (no {PROTECTION_HEADER} header) and this reader requires "
                                f"binding to {' and '.join(require_binding)}", "unbound")
        if value and value[0] == FORMAT_VERSION_3:
            raise EnvelopeError(f"a version 3 envelope without its {PROTECTION_HEADER} header (stripped?)", "flags")
        return None
    flags = parse_protection_header(protection_header)
    missing = [what for what, bit in (("stream", STREAM), ("key", KEY)) if what in require_binding and not flags & bit]
    if missing:
        raise EnvelopeError(f"the record is not bound to its {' and '.join(missing)}, which this reader requires",
                            "unbound")
    return flags


def check_envelope_flags(envelope: bytes, flags: int) -> None:
    """Under a protection header, an envelope must be of version 3 with the same flags."""
    if not envelope or envelope[0] != FORMAT_VERSION_3:
        raise EnvelopeError(f"the {PROTECTION_HEADER} header announces format 3 but the value is no version 3 "
                            "envelope", "flags")
    if len(envelope) < 2:
        raise EnvelopeError("truncated in the flags", "truncated")
    if envelope[1] != flags:
        check_flags(envelope[1], "the envelope")
        raise EnvelopeError(f"the envelope's flags 0x{envelope[1]:02x} differ from its {PROTECTION_HEADER} header's "
                            f"0x{flags:02x}", "flags")


def open_record_with(data_key: bytes, envelope: bytes, protection_header, stream: str, record_key,
                     require_binding=(), max_plaintext: int = DEFAULT_MAX_PLAINTEXT):
    """Opens an envelope record with its data key: (value, sealed headers). `record_key`
    is the key as received (None for a null key), `stream` the reader's stream name."""
    flags = record_flags(envelope, protection_header, require_binding)
    if flags is None:
        return open_with(data_key, envelope), []
    check_envelope_flags(envelope, flags)
    opened = open_with(data_key, envelope, binding(flags, stream, record_key)[16:], max_plaintext)
    if not flags & HEADERS:
        return opened, []
    headers, value = unframe(opened)
    return value, headers


class Unwrapper:
    """Unwraps data keys with Vault (an hvac client), once per wrapped key and then again
    after `data_key_max_age` seconds (`clock`: monotonic seconds, for tests). Vault's
    refusals are hvac's exceptions, raised as they are, but one: with `subject_keys` (the
    prefix of data subjects' key names, docs/forgetting.md) only envelopes under such a key
    are opened, and one whose subject's key Vault no longer has fails with EnvelopeError
    kind "forgotten"."""

    def __init__(self, client, mount: str, subject_keys: str = None,
                 data_key_max_age: float = DEFAULT_DATA_KEY_MAX_AGE, clock=time.monotonic):
        self.client, self.mount = client, mount
        self.subject_keys = None if subject_keys is None else check_subject_keys(subject_keys)
        self.cache = DataKeyCache(data_key_max_age, clock=clock)
        self.vault_requests = 0

    def close(self) -> None:
        self.cache.close()

    def data_key(self, key_name: str, wrapped: str) -> bytes:
        check_key_name(key_name.encode())  # parse() checked it; other callers may not
        check_subject_key(key_name, self.subject_keys)
        return bytes(self.cache.get(key_name, wrapped, lambda: self._unwrap(key_name, wrapped)))

    def _unwrap(self, key_name: str, wrapped: str) -> bytearray:
        self.vault_requests += 1
        try:
            response = self.client.secrets.transit.decrypt_data(
                name=key_name, ciphertext=wrapped, mount_point=self.mount
            )
        except Exception as error:
            # hvac's InvalidRequest (HTTP 400) carries Vault's "errors"; the name has the
            # prefix (checked above), so the missing key is a subject's, deleted by forget.
            errors = getattr(error, "errors", None) or []
            if self.subject_keys is not None and any(KEY_NOT_FOUND in str(e) for e in errors):
                raise subject_forgotten() from None
            raise
        return bytearray(base64.b64decode(response["data"]["plaintext"]))

    def open(self, envelope: bytes) -> bytes:
        key_name, wrapped, *_ = parse(envelope)
        return open_with(self.data_key(key_name, wrapped), envelope)


VAULT_PREFIX = b"vault:v"


def json_pointer(tokens) -> str:
    return "".join("/" + str(t).replace("~", "~0").replace("/", "~1") for t in tokens)


class RecordReader:
    """Reads whole records kafka-transit (or writer.py, or the Java and Go writers)
    protected, formats 1 to 3: envelopes and `vault:` values, record keys, sealed headers.

    transit: a transit.Transit; key: the transit key of `vault:` values and fields (and,
    when set, the one envelopes must name); subject_keys, instead of key: the prefix of
    data subjects' transit key names (docs/forgetting.md): an envelope is opened under the
    key its header names if the name has the prefix, refused otherwise, and fails with
    kind "forgotten" ("subject forgotten: ...") once its subject's key was deleted;
    record_keys_key: the key of encrypted record keys; stream: the stream name records are
    bound to (default: the topic read); require_binding: ("stream", "key") a record must
    be bound to; max_plaintext: what a compressed record may expand to at most;
    data_key_max_age: seconds an unwrapped data key is used before Vault is asked again
    (the bound on how long a forgotten subject's records still open); clock: monotonic
    seconds (for tests)."""

    def __init__(self, transit, key: str = None, record_keys_key: str = None, stream: str = None,
                 require_binding=(), max_plaintext: int = DEFAULT_MAX_PLAINTEXT, subject_keys: str = None,
                 data_key_max_age: float = DEFAULT_DATA_KEY_MAX_AGE, clock=time.monotonic):
        unknown = set(require_binding) - {"stream", "key"}
        if unknown:
            raise ValueError(f"require_binding takes \"stream\" and \"key\", not {sorted(unknown)}")
        if key is not None and subject_keys is not None:
            # Each envelope names its subject's key; one key besides would be a second rule.
            raise ValueError("key and subject_keys: give one (subject_keys opens each envelope under the subject's "
                             "key its header names)")
        self.transit, self.key, self.record_keys_key = transit, key, record_keys_key
        self.stream, self.require_binding, self.max_plaintext = stream, tuple(require_binding), max_plaintext
        self.subject_keys = None if subject_keys is None else check_subject_keys(subject_keys)
        self._data_keys = DataKeyCache(data_key_max_age, clock=clock)

    def close(self) -> None:
        self._data_keys.close()

    def _data_key(self, key_name: str, wrapped: str) -> bytearray:
        return self._data_keys.get(key_name, wrapped, lambda: self._unwrap(key_name, wrapped))

    def _unwrap(self, key_name: str, wrapped: str) -> bytearray:
        from transit import TransitError

        try:
            return bytearray(self.transit.decrypt(key_name, wrapped))
        except TransitError as error:
            # The name has the prefix (checked before), so the missing key is a subject's,
            # deleted by forget; without subject_keys a missing key is a mistake to report.
            if self.subject_keys is not None and error.key_not_found:
                raise subject_forgotten() from None
            raise self._refused(error) from None

    @staticmethod
    def _vault(call, *args, **kwargs):
        from transit import TransitError

        try:
            return bytearray(call(*args, **kwargs))
        except TransitError as error:
            raise RecordReader._refused(error) from None

    @staticmethod
    def _refused(error) -> EnvelopeError:
        kind = "authentication" if error.authentication else "vault"
        return EnvelopeError(f"Vault could not decrypt: {error}", kind)

    def read(self, topic: str, key, value, headers=()):
        """(key, value, headers) as they were before protection. `headers` is a list of
        (name, bytes or None) as confluent-kafka gives them; the protection header and
        the sealed headers' place are handled here."""
        headers = list(headers or [])
        protection = [v for n, v in headers if n == PROTECTION_HEADER]
        if len(protection) > 1:
            raise EnvelopeError(f"the record carries {len(protection)} {PROTECTION_HEADER} headers", "flags")
        stream = self.stream or topic
        flags = record_flags(value, protection[0] if protection else None, self.require_binding)
        kept = [(n, v) for n, v in headers if n != PROTECTION_HEADER]
        if value is not None:
            value, sealed = self._read_value(value, flags, stream, key)
            kept += sealed
        return self._restore_key(key, flags, stream), value, kept

    def _read_value(self, value: bytes, flags, stream: str, key):
        if value.startswith(VAULT_PREFIX):
            if self.key is None:
                # Only envelopes are sealed per data subject: subject_keys opens no vault: value.
                raise EnvelopeError("a vault:v value needs the transit key to decrypt it with", "config")
            if flags is None:
                return self._vault(self.transit.decrypt, self.key, value.decode("ascii")), []
            if flags & (COMPRESSION_MASK | PADDED):
                raise EnvelopeError("a vault: value never carries compression or padding flags", "flags")
            opened = bytes(self._vault(self.transit.decrypt, self.key, value.decode("ascii"),
                                       associated_data=binding(flags, stream, key)))
        else:
            if flags is not None:
                check_envelope_flags(value, flags)
            header = parse_header(value)
            if self.key is not None and header["key_name"] != self.key:
                raise EnvelopeError(f"envelope was sealed with another Vault key than this reader's \"{self.key}\"",
                                    "key mismatch")
            check_subject_key(header["key_name"], self.subject_keys)
            data_key = self._data_key(header["key_name"], header["wrapped_key"])
            if flags is None:
                return open_with(bytes(data_key), value), []
            opened = open_with(bytes(data_key), value, binding(flags, stream, key)[16:], self.max_plaintext)
        if not flags & HEADERS:
            return opened, []
        headers, value = unframe(opened)
        return value, headers

    def _restore_key(self, key, flags, stream: str):
        return restore_record_key(self.transit, self.record_keys_key, key, flags, stream)

    def read_fields(self, topic: str, key, document: bytes, protection_header=None):
        """A JSON document whose `vault:` string fields encrypt-fields wrote, decrypted:
        format 3 fields are bound to their place (JSON Pointer) as well."""
        flags = record_flags(b"{", protection_header, self.require_binding)
        if flags is not None and flags & (COMPRESSION_MASK | PADDED | HEADERS):
            raise EnvelopeError("encrypted fields never carry compression, padding or sealed headers", "flags")
        stream = self.stream or topic

        def walk(node, path):
            if isinstance(node, dict):
                return {k: walk(v, path + [k]) for k, v in node.items()}
            if isinstance(node, list):
                return [walk(v, path + [i]) for i, v in enumerate(node)]
            if isinstance(node, str) and node.startswith("vault:v"):
                if self.key is None:
                    # Fields are never sealed per data subject: subject_keys opens none.
                    raise EnvelopeError("an encrypted field needs the transit key to decrypt it with", "config")
                ad = None if flags is None else binding(flags, stream, key, json_pointer(path))
                return json.loads(bytes(self._vault(self.transit.decrypt, self.key, node, associated_data=ad)))
            return node

        return json.dumps(walk(json.loads(document), []), separators=(",", ":")).encode()


def restore_record_key(transit, record_keys_key: str, key, flags, stream: str):
    """A record key as it was before protection (step 4 of docs/protected-records.md "What
    each reader must check"): decrypted with `record_keys_key` and the stream as context
    when the flags say it is encrypted; otherwise as received (kept, or an HMAC: one-way,
    it stays as it is). Shared by RecordReader and schema_fields.FieldOpener."""
    if key is None or flags is None or flags & RECORD_KEYS_MASK != KEYS_ENCRYPTED:
        return key
    if record_keys_key is None:
        raise EnvelopeError("the record key is encrypted: the reader needs record_keys_key", "config")
    return bytes(RecordReader._vault(transit.decrypt, record_keys_key, key.decode("ascii"), context=stream.encode()))


class RecordingVault:
    """Stands in for hvac's client in `check_vectors`: records every transit/decrypt it is
    asked for, and answers none (a check that must refuse before asking fails if it asks)."""

    def __init__(self):
        self.asked = []
        self.secrets = self
        self.transit = self

    def decrypt_data(self, name, ciphertext, mount_point="transit", **_):
        self.asked.append(f"{mount_point}/decrypt/{name}")
        raise AssertionError(f"Vault was asked at {mount_point}/decrypt/{name}")


def check_vectors(path: str) -> None:
    vectors = json.load(open(path, encoding="utf-8"))["vectors"]
    for vector in vectors:
        envelope = bytes.fromhex(vector["envelope_hex"])
        key_name, wrapped, *_ = parse(envelope)
        assert key_name == vector["key_name"] and wrapped == vector["wrapped_key"], vector["name"]
        assert envelope[0] == vector["format_version"] in FORMAT_VERSIONS, vector["name"]
        plaintext = open_with(
            bytes.fromhex(vector["data_key_hex"]), envelope, bytes.fromhex(vector["aad_hex"])
        )
        assert plaintext == bytes.fromhex(vector["plaintext_hex"]), vector["name"]
    tampered = json.load(open(path, encoding="utf-8")).get("tampered", [])
    for case in tampered:
        envelope = bytes.fromhex(case["envelope_hex"])
        try:
            open_with(bytes.fromhex(case["data_key_hex"]), envelope, bytes.fromhex(case["aad_hex"]))
        except InvalidTag:
            failed = "authentication"
        except EnvelopeError as error:
            failed = error.kind
        else:
            raise AssertionError(f"tampered envelope opened: {case['name']}")
        assert failed == case["expect"], f"{case['name']}: failed on {failed}, expected {case['expect']}"
        if case["expect"] == "key name":
            # The key name is the path of the Vault request: refused before any is made.
            vault = RecordingVault()
            try:
                Unwrapper(vault, "transit").open(envelope)
            except EnvelopeError as error:
                assert error.kind == "key name", f"{case['name']}: the unwrapper failed on {error.kind}"
            assert vault.asked == [], f"{case['name']}: Vault was asked at {vault.asked}"
    vault = RecordingVault()
    try:
        Unwrapper(vault, "transit").data_key("../../sys/seal", "vault:v1:AAAA")
    except EnvelopeError as error:
        assert error.kind == "key name" and "sys" not in str(error), str(error)
    assert vault.asked == [], f"the unwrapper asked Vault at {vault.asked}"
    print(f"{len(vectors)} test vectors opened correctly, {len(tampered)} tampered ones rejected")
    check_format3(json.load(open(path, encoding="utf-8"))["format3"])


def hex_or_none(text):
    return None if text is None else bytes.fromhex(text)


def check_format3(document: dict) -> None:
    """Every format 3 vector opens to its value and sealed headers; every tampered one is
    refused for its reason; binding data and frames are byte for byte."""
    for case in document["bindings"]:
        made = binding(case["flags"], case["stream"], hex_or_none(case["record_key_hex"]), case["pointer"])
        assert made.hex() == case["binding_hex"], case
    for case in document["frames"]:
        headers = [(n, hex_or_none(v)) for n, v in case["headers"]]
        assert frame(headers, bytes.fromhex(case["value_hex"])).hex() == case["frame_hex"], case
        assert unframe(bytes.fromhex(case["frame_hex"])) == (headers, bytes.fromhex(case["value_hex"])), case
    for vector in document["envelopes"]:
        envelope = bytes.fromhex(vector["envelope_hex"])
        value, headers = open_record_with(bytes.fromhex(vector["data_key_hex"]), envelope,
                                          vector["protection_header"], vector["stream"],
                                          hex_or_none(vector["record_key_hex"]))
        assert value.hex() == vector["value_hex"], vector["name"]
        assert headers == [(n, hex_or_none(v)) for n, v in vector["sealed_headers"]], vector["name"]
        assert binding(vector["flags"], vector["stream"], hex_or_none(vector["record_key_hex"])).hex() \
            == vector["binding_hex"], vector["name"]
    for case in document["tampered"]:
        try:
            open_record_with(bytes.fromhex(case["data_key_hex"]), bytes.fromhex(case["envelope_hex"]),
                             case["protection_header"], case["stream"], hex_or_none(case["record_key_hex"]),
                             case["require_binding"], case["max_plaintext_bytes"])
        except EnvelopeError as error:
            failed = error.kind
        else:
            raise AssertionError(f"tampered format 3 record opened: {case['name']}")
        assert failed == case["expect"], f"{case['name']}: failed on {failed}, expected {case['expect']}"
    print(f"format 3: {len(document['envelopes'])} envelopes opened, {len(document['tampered'])} tampered records "
          f"refused, {len(document['bindings'])} bindings and {len(document['frames'])} frames as published")


def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 60.0):
    """Reads `count` records from the beginning of every partition, as an operator would."""
    import time

    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "envelope-reference-decryptor",
            "enable.auto.commit": False,
            # Skip records of aborted transactions (exactly-once pipelines).
            "isolation.level": "read_committed",
            "fetch.max.bytes": 104857600,
            "max.partition.fetch.bytes": 104857600,
            "receive.message.max.bytes": 105000000,
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    messages, deadline = [], time.monotonic() + timeout
    while len(messages) < count and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            messages.append(message)
    consumer.close()
    return messages


def decrypt_topic(args) -> None:
    import hvac

    client = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"])
    try:
        unwrapper = Unwrapper(client, args.mount, subject_keys=args.subject_keys,
                              data_key_max_age=args.data_key_max_age)
    except ValueError as error:
        sys.exit(str(error))
    messages = read_topic(args.bootstrap, args.topic, args.count)
    if len(messages) < args.count:
        sys.exit(f"only {len(messages)} of {args.count} records on {args.topic}")
    expected = {}
    if args.expect:
        for line in open(args.expect, encoding="utf-8"):
            key, _, value = line.rstrip("\n").partition("\t")
            expected[key] = value.encode()
    mismatches = forgotten = 0
    for index, message in enumerate(messages):
        try:
            plaintext = unwrapper.open(message.value())
        except EnvelopeError as error:
            if error.kind != "forgotten":
                raise
            # Not the key: with records sealed per subject it may be the subject's id.
            print(f"  error: {message.topic()} partition {message.partition()} offset {message.offset()}: {error}")
            forgotten += 1
            continue
        key = (message.key() or b"").decode()
        if index < args.show:
            shown = plaintext[:100].decode(errors="replace")
            print(f"  {key} | {shown}{'…' if len(plaintext) > 100 else ''}")
        if args.expect and expected.get(key) != plaintext:
            mismatches += 1
    if mismatches:
        sys.exit(f"{mismatches} records differ from {args.expect}")
    digest = hashlib.sha256(b"".join(sorted(m.key() or b"" for m in messages))).hexdigest()[:12]
    print(
        f"python reference decryptor: opened {len(messages) - forgotten} envelopes from {args.topic} "
        f"with {unwrapper.vault_requests} Vault request(s) (keys digest {digest})"
        + (", all identical to the originals" if args.expect else "")
        + (f"; {forgotten} of forgotten subjects" if forgotten else "")
    )
    unwrapper.close()


def hx(data):
    return None if data is None else bytes(data).hex()


def unhx(text):
    return None if text is None else bytes.fromhex(text)


def open_file(lines, reader: RecordReader):
    """Records as demos/lib/record_file.py writes them (JSON lines: topic, key, value, and
    headers [name, value], bytes in hex or null) read with `reader`. Returns (out lines,
    counts). An opened record's line has its key restored, its value opened and its headers
    as the reader gives them back (the protection header left out, the sealed ones after
    the kept ones); one that does not open keeps its topic, key and headers as received,
    without value, with "error" (EnvelopeError's message: a forgotten subject's starts
    "subject forgotten") and "kind" (its kind). Other members (partition, offset,
    timestamp) go on as they are."""
    counts = {"records": 0, "opened": 0, "forgotten": 0, "errors": 0}
    out = []
    for text in lines:
        if not text.strip():
            continue
        line = json.loads(text)
        counts["records"] += 1
        try:
            key, value, headers = reader.read(line["topic"], unhx(line["key"]), unhx(line["value"]),
                                              [(name, unhx(v)) for name, v in line.get("headers") or []])
        except EnvelopeError as error:
            counts["forgotten" if error.kind == "forgotten" else "errors"] += 1
            out.append(dict({n: v for n, v in line.items() if n != "value"}, error=str(error), kind=error.kind))
            continue
        counts["opened"] += 1
        out.append(dict(line, key=hx(key), value=hx(value), headers=[[name, hx(v)] for name, v in headers]))
    return out, counts


def cmd_open_file(args) -> None:
    from transit import Transit

    for name in ("VAULT_ADDR", "VAULT_TOKEN"):
        if not os.environ.get(name):
            sys.exit(f"set {name}")
    transit = Transit(os.environ["VAULT_ADDR"], os.environ["VAULT_TOKEN"], mount=args.mount,
                      namespace=os.environ.get("VAULT_NAMESPACE") or None,
                      verify=os.environ.get("VAULT_CACERT") or True)
    try:
        reader = RecordReader(transit, key=args.key, subject_keys=args.subject_keys,
                              record_keys_key=args.record_keys_key, stream=args.stream,
                              require_binding=args.require_binding, data_key_max_age=args.data_key_max_age)
    except ValueError as error:
        sys.exit(str(error))
    with open(args.input, encoding="utf-8") as handle:
        out, counts = open_file(handle, reader)
    reader.close()
    with open(args.output, "w", encoding="utf-8") as handle:
        for line in out:
            handle.write(json.dumps(line) + "\n")
    print(f"open-file: {counts['records']} records from {args.input}: {counts['opened']} opened, "
          f"{counts['forgotten']} of forgotten subjects, {counts['errors']} could not be opened otherwise; "
          f"{transit.requests} Vault requests; wrote {args.output}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    vectors = commands.add_parser("vectors", help="check the published test vectors")
    vectors.add_argument("path")
    topic = commands.add_parser("topic", help="decrypt envelopes read from a Kafka topic")
    topic.add_argument("--bootstrap", required=True)
    topic.add_argument("--topic", required=True)
    topic.add_argument("--count", type=int, required=True)
    topic.add_argument("--mount", default="transit")
    topic.add_argument("--expect", help="a key<TAB>value file the plaintexts must match")
    topic.add_argument("--show", type=int, default=0, help="print the first N records")
    topic.add_argument("--subject-keys", metavar="PREFIX",
                       help="envelopes sealed per data subject: the prefix of the subjects' key names (others are "
                            "refused; a forgotten subject's records are error lines)")
    records = commands.add_parser("open-file", help="read a file of records (record_file.py dump) with RecordReader")
    records.add_argument("--in", dest="input", required=True,
                         help='JSON lines {"topic": str, "key": hex|null, "value": hex|null, '
                              '"headers": [[name, hex|null]]}')
    records.add_argument("--out", dest="output", required=True,
                         help='JSON lines, each record opened, or {..., "error": "...", "kind": "..."}')
    keys = records.add_mutually_exclusive_group(required=True)
    keys.add_argument("--key", help="the transit key of the records (envelopes must name it)")
    keys.add_argument("--subject-keys", metavar="PREFIX",
                      help="records sealed per data subject: the prefix of the subjects' key names")
    records.add_argument("--stream", help="format 3: the stream records are bound to (default: each line's topic)")
    records.add_argument("--record-keys-key", help="format 3: the transit key of encrypted record keys")
    records.add_argument("--require-binding", nargs="*", default=[], choices=["stream", "key"],
                         help="format 3: refuse records bound to less (and records without the protection header)")
    records.add_argument("--mount", default="transit", help="the transit mount (default transit)")
    for command in (topic, records):
        command.add_argument("--data-key-max-age", type=float, default=DEFAULT_DATA_KEY_MAX_AGE, metavar="SECONDS",
                             help="how long an unwrapped data key is used before Vault is asked again (default 60)")
    args = parser.parse_args()
    if args.command == "vectors":
        check_vectors(args.path)
    elif args.command == "topic":
        decrypt_topic(args)
    else:
        cmd_open_file(args)


if __name__ == "__main__":
    main()
