"""Plain data across the sandbox wall: a strict codec and length-prefixed frames. Stdlib only.

Code scoring runs the model's answer in the sandbox and the tests in a trusted judge process;
the two exchange only plain data: None, bool, int, float (inf and nan too), complex, str
(lone surrogates too), bytes, list, tuple, set, frozenset and dict. The wire form is JSON in which
every value is a tagged array (`["i", "12"]`, `["f", "0x1.8p+1"]`, `["l", [...]]`), so a float
keeps every bit and a tuple stays a tuple. Decoding builds only those types, with this
process's own builtins: nothing the sandbox sends can carry behaviour (an `__eq__`, a
`__hash__`), and it is never unpickled. Malformed, oversized or too deeply nested input is a
`PlainDataError`, never a crash.

This file runs on both sides: the judge imports it, and the sandbox gets a copy beside its
callee (where encoding a value no test could compare is `Uncrossable`).
"""

import json
import os
import re
import struct

MAX_FRAME_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 100
MAX_INT_DIGITS = 4300  # Python's own limit for int <-> str
_INT = re.compile(rf"-?[0-9]{{1,{MAX_INT_DIGITS}}}\Z")
_FLOAT = re.compile(r"(-?0x[0-9a-f]+(\.[0-9a-f]*)?p[+-][0-9]+|-?inf|nan)\Z")
_HEX = re.compile(r"([0-9a-f]{2})*\Z")


class PlainDataError(ValueError):
    """The bytes are not a well-formed plain value (or frame)."""


class Uncrossable(TypeError):
    """The value is not plain data (a generator, a class instance, a function...)."""

    def __init__(self, type_name):
        super().__init__(f"a {type_name} cannot cross the sandbox wall as data")
        self.type_name = type_name


def encode(value, depth=0):
    """The tagged form of `value`. Subclasses of the plain types cross as their base type
    (a namedtuple as a tuple, a Counter as a dict); nothing else crosses."""
    if depth > MAX_DEPTH:
        raise Uncrossable(f"value nested more than {MAX_DEPTH} levels")
    if value is None:
        return ["N"]
    if isinstance(value, bool):
        return ["T"] if value else ["F"]
    if isinstance(value, int):
        return ["i", int.__repr__(value)]
    if isinstance(value, float):
        return ["f", float.hex(value)]
    if isinstance(value, complex):
        return ["c", f"{float.hex(value.real)} {float.hex(value.imag)}"]
    if isinstance(value, str):
        return ["s", str.__str__(value)]
    if isinstance(value, bytes):
        return ["b", bytes.hex(value)]
    for kind, tag in ((list, "l"), (tuple, "t"), (set, "S"), (frozenset, "z")):
        if isinstance(value, kind):
            return [tag, [encode(v, depth + 1) for v in kind.__iter__(value)]]
    if isinstance(value, dict):
        pairs = dict.items(value)
        return ["d", [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in pairs]]
    raise Uncrossable(type(value).__name__)


def decode(tagged, depth=0):
    """The value a tagged form stands for; anything else is a PlainDataError."""
    if depth > MAX_DEPTH:
        raise PlainDataError(f"nested more than {MAX_DEPTH} levels")
    if type(tagged) is not list or not tagged or type(tagged[0]) is not str:
        raise PlainDataError("not a tagged value")
    tag, rest = tagged[0], tagged[1:]
    if tag in ("N", "T", "F"):
        if rest:
            raise PlainDataError("a constant with a payload")
        return {"N": None, "T": True, "F": False}[tag]
    if len(rest) != 1:
        raise PlainDataError(f"tag {tag[:8]!r} without exactly one payload")
    payload = rest[0]
    if tag in ("i", "f", "c", "s", "b"):
        if type(payload) is not str:
            raise PlainDataError(f"tag {tag!r} with a non-string payload")
        return _scalar(tag, payload)
    if tag in ("l", "t", "S", "z", "d"):
        if type(payload) is not list:
            raise PlainDataError(f"tag {tag!r} with a non-list payload")
        return _container(tag, payload, depth)
    raise PlainDataError(f"unknown tag {tag[:8]!r}")


def _scalar(tag, payload):
    if tag == "s":
        return payload
    if tag == "i":
        if not _INT.match(payload):
            raise PlainDataError(f"not an integer of at most {MAX_INT_DIGITS} digits")
        return int(payload)
    if tag == "f":
        return _float(payload)
    if tag == "c":
        parts = payload.split(" ")
        if len(parts) != 2:
            raise PlainDataError("a complex number without two parts")
        return complex(_float(parts[0]), _float(parts[1]))
    if not _HEX.match(payload):
        raise PlainDataError("bytes not in hexadecimal")
    return bytes.fromhex(payload)


def _float(payload):
    if not _FLOAT.match(payload):
        raise PlainDataError("not a hexadecimal float")
    try:
        return float.fromhex(payload)
    except (ValueError, OverflowError) as exc:
        raise PlainDataError(f"not a float: {exc}") from None


def _container(tag, payload, depth):
    try:
        if tag == "d":
            result = {}
            for pair in payload:
                if type(pair) is not list or len(pair) != 2:
                    raise PlainDataError("a dict entry that is not a pair")
                result[decode(pair[0], depth + 1)] = decode(pair[1], depth + 1)
            return result
        values = [decode(v, depth + 1) for v in payload]
        return {"l": list, "t": tuple, "S": set, "z": frozenset}[tag](values)
    except TypeError as exc:  # an unhashable set member or dict key
        raise PlainDataError(f"unhashable member: {exc}") from None


def dumps(message):
    """One message (a dict of JSON values) as a frame: 4-byte length, then JSON (ASCII)."""
    body = json.dumps(message, ensure_ascii=True, allow_nan=False).encode("ascii")
    if len(body) > MAX_FRAME_BYTES:
        raise Uncrossable(f"message of {len(body)} bytes")
    return struct.pack(">I", len(body)) + body


def read_frame(read_exactly):
    """The next message from `read_exactly(n)` (which returns fewer bytes only at EOF), or
    None at a clean EOF. A message is a JSON object; anything else is a PlainDataError."""
    header = read_exactly(4)
    if not header:
        return None
    if len(header) != 4:
        raise PlainDataError("a frame cut short")
    (size,) = struct.unpack(">I", header)
    if size > MAX_FRAME_BYTES:
        raise PlainDataError(f"a frame of {size} bytes (limit {MAX_FRAME_BYTES})")
    body = read_exactly(size)
    if len(body) != size:
        raise PlainDataError("a frame cut short")
    try:
        message = json.loads(body.decode("ascii"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PlainDataError(f"not JSON: {str(exc)[:100]}") from None
    if type(message) is not dict:
        raise PlainDataError("a message that is not an object")
    return message


def _no_constant(name):
    raise PlainDataError(f"bare {name} in JSON")


def fd_reader(fd):
    """read_exactly(n) over a blocking file descriptor."""

    def read_exactly(size):
        chunks, left = [], size
        while left:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    return read_exactly


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
