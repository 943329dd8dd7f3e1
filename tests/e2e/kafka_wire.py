"""Raw Kafka wire protocol, for the checks real clients cannot express: malformed frames,
unsupported versions, batches with a bad CRC, and byte-for-byte comparison of what was
produced with what is fetched. Only the few non-flexible request versions the tests need.
"""

import gzip
import socket
import struct

import cramjam
import lz4.frame
import zstandard

# --- CRC-32C (Castagnoli), as record batches use it -------------------------------------

_CRC_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# --- Record batches ----------------------------------------------------------------------

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def _varint(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)  # zig-zag
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _record(offset_delta: int, ts_delta: int, key, value) -> bytes:
    body = bytearray(b"\x00")  # attributes
    body += _varint(ts_delta) + _varint(offset_delta)
    for field in (key, value):
        if field is None:
            body += _varint(-1)
        else:
            body += _varint(len(field)) + field
    body += _varint(0)  # headers
    return _varint(len(body)) + bytes(body)


def _compress(codec: str, data: bytes) -> bytes:
    if codec == "none":
        return data
    if codec == "gzip":
        return gzip.compress(data)
    if codec == "snappy":
        return bytes(cramjam.snappy.compress_raw(data))
    if codec == "lz4":
        return lz4.frame.compress(data)
    if codec == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    raise ValueError(codec)


def record_batch(records, codec="none", base_timestamp=1_700_000_000_000, producer=None) -> bytes:
    """A v2 record batch as a producer would send it. `records` is a list of (key, value);
    `producer` is an idempotent producer's (id, epoch, first sequence)."""
    producer_id, producer_epoch, base_sequence = producer or (-1, -1, -1)
    section = b"".join(
        _record(i, i, key, value) for i, (key, value) in enumerate(records)
    )
    section = _compress(codec, section)
    n = len(records)
    after_crc = struct.pack(
        ">hiqqqhii",
        CODECS[codec],  # attributes
        n - 1,  # last offset delta
        base_timestamp,
        base_timestamp + n - 1,  # max timestamp
        producer_id,
        producer_epoch,
        base_sequence,
        n,
    ) + section
    crc = crc32c(after_crc)
    batch_length = 4 + 1 + 4 + len(after_crc)  # epoch, magic, crc, rest
    return struct.pack(">qiibI", 0, batch_length, -1, 2, crc) + after_crc


# --- Encoding helpers --------------------------------------------------------------------


def string(s) -> bytes:
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def nbytes(b) -> bytes:
    if b is None:
        return struct.pack(">i", -1)
    return struct.pack(">i", len(b)) + b


def array(items) -> bytes:
    return struct.pack(">i", len(items)) + b"".join(items)


class Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return v[0] if len(v) == 1 else v

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.data[self.pos : self.pos + n].decode()
        self.pos += n
        return s

    def nbytes(self):
        n = self.take(">i")
        if n < 0:
            return None
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def array(self, item):
        n = self.take(">i")
        return [] if n < 0 else [item(self) for _ in range(n)]


# --- A connection ------------------------------------------------------------------------


class Connection:
    """One TCP connection speaking request header v1 / response header v0."""

    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.correlation = 0

    def close(self):
        self.sock.close()

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def send(self, api_key: int, version: int, body: bytes) -> int:
        self.correlation += 1
        header = struct.pack(">hhi", api_key, version, self.correlation) + string("e2e")
        frame = header + body
        self.send_raw(struct.pack(">i", len(frame)) + frame)
        return self.correlation

    def _read_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("connection closed by broker")
            buf += chunk
        return bytes(buf)

    def receive(self):
        size = struct.unpack(">i", self._read_exact(4))[0]
        frame = self._read_exact(size)
        return struct.unpack(">i", frame[:4])[0], frame[4:]

    def request(self, api_key: int, version: int, body: bytes) -> Reader:
        correlation = self.send(api_key, version, body)
        got, payload = self.receive()
        assert got == correlation, f"expected correlation id {correlation}, got {got}"
        return Reader(payload)

    def is_closed_by_peer(self, wait: float = 5.0) -> bool:
        """True when the broker closes the connection within `wait` seconds."""
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False


# --- The requests the tests use ----------------------------------------------------------

API_PRODUCE, API_FETCH, API_METADATA, API_VERSIONS, API_CREATE_TOPICS = 0, 1, 3, 18, 19
API_INIT_PRODUCER_ID = 22


def api_versions(conn: Connection, version: int = 0):
    """Returns (error_code, {api_key: (min, max)}) from a v0-shaped response."""
    r = conn.request(API_VERSIONS, version, b"")
    error = r.take(">h")
    apis = {k: (lo, hi) for k, lo, hi in r.array(lambda r: r.take(">hhh"))}
    return error, apis


def produce(conn: Connection, topic: str, partition: int, records: bytes, acks: int = -1):
    """Produce v3. Returns (error_code, base_offset) for the one partition."""
    body = (
        string(None)
        + struct.pack(">hi", acks, 30_000)
        + array([string(topic) + array([struct.pack(">i", partition) + nbytes(records)])])
    )
    if acks == 0:
        conn.send(API_PRODUCE, 3, body)
        return None
    r = conn.request(API_PRODUCE, 3, body)
    topics = r.array(
        lambda r: (r.string(), r.array(lambda r: r.take(">ihqq")))
    )
    (_, [(_, error, base_offset, _)]) = topics[0]
    return error, base_offset


def fetch(conn: Connection, topic: str, partition: int, offset: int, max_bytes: int = 1 << 20):
    """Fetch v4 without waiting. Returns (error_code, high_watermark, records bytes)."""
    body = struct.pack(">iiiib", -1, 0, 0, max_bytes, 0) + array(
        [string(topic) + array([struct.pack(">iqi", partition, offset, max_bytes)])]
    )
    r = conn.request(API_FETCH, 4, body)
    r.take(">i")  # throttle
    topics = r.array(
        lambda r: (
            r.string(),
            r.array(
                lambda r: (
                    r.take(">ihqq"),
                    r.array(lambda r: r.take(">qq")),
                    r.nbytes(),
                )
            ),
        )
    )
    (_, [((_, error, hw, _lso), _aborted, records)]) = topics[0]
    return error, hw, records or b""


def metadata(conn: Connection, topics):
    """Metadata v1. Returns {topic: (error_code, partition count)} and the controller id."""
    body = array([string(t) for t in topics]) if topics is not None else struct.pack(">i", -1)
    r = conn.request(API_METADATA, 1, body)
    r.array(lambda r: (r.take(">i"), r.string(), r.take(">i"), r.string()))
    controller = r.take(">i")
    result = {}
    for error, name, _internal, partitions in r.array(
        lambda r: (
            r.take(">h"),
            r.string(),
            r.take(">b"),
            r.array(
                lambda r: (
                    r.take(">hii"),
                    r.array(lambda r: r.take(">i")),
                    r.array(lambda r: r.take(">i")),
                )
            ),
        )
    ):
        result[name] = (error, len(partitions))
    return result, controller


def create_topic(conn: Connection, name: str, partitions: int = 1, replication: int = 1):
    """CreateTopics v2. Returns the error code."""
    body = (
        array(
            [
                string(name)
                + struct.pack(">ih", partitions, replication)
                + array([])
                + array([])
            ]
        )
        + struct.pack(">ib", 30_000, 0)
    )
    r = conn.request(API_CREATE_TOPICS, 2, body)
    r.take(">i")
    [(_, error, _message)] = r.array(lambda r: (r.string(), r.take(">h"), r.string()))
    return error


def init_producer_id(conn: Connection):
    """InitProducerId v0 for an idempotent producer. Returns (error_code, id, epoch)."""
    r = conn.request(API_INIT_PRODUCER_ID, 0, string(None) + struct.pack(">i", 60_000))
    r.take(">i")  # throttle
    return r.take(">h"), r.take(">q"), r.take(">h")
