"""The codec between the sandbox and the judge: exact round trips, and hostile bytes that only
ever give a PlainDataError (thousands of seeded malformed frames, no other exception)."""

from __future__ import annotations

import collections
import json
import math
import random
import struct

import pytest

from openparity.bench.plain_data import (
    MAX_DEPTH,
    PlainDataError,
    Uncrossable,
    decode,
    dumps,
    encode,
    read_frame,
)


def random_value(rng: random.Random, depth: int = 0):
    scalars = [
        lambda: None,
        lambda: rng.random() < 0.5,
        lambda: rng.randint(-(10**30), 10**30),
        lambda: rng.choice([0.0, -0.0, math.inf, -math.inf, math.nan, 1e-310, 0.1 + 0.2]),
        lambda: rng.uniform(-1e6, 1e6),
        lambda: complex(rng.random(), -rng.random()),
        lambda: "".join(rng.choice("ab二加等于几？\u00e9\ud800\U0001f600\x00\n") for _ in range(5)),
        lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(6))),
    ]
    if depth >= 4 or rng.random() < 0.5:
        return rng.choice(scalars)()
    kind = rng.choice(["list", "tuple", "set", "frozenset", "dict"])
    hashable = lambda: rng.choice(scalars[:4] + scalars[6:])()  # noqa: E731
    if kind in ("set", "frozenset"):
        return {"set": set, "frozenset": frozenset}[kind](hashable() for _ in range(3))
    if kind == "dict":
        return {hashable(): random_value(rng, depth + 1) for _ in range(3)}
    values = [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return values if kind == "list" else tuple(values)


def same(a, b) -> bool:
    """Equal, of exactly the same types all the way down, nan equal to nan, -0.0 kept."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and str(a) == str(b))
    if isinstance(a, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):  # in order: a nan key is never `in` another dict
        pairs = zip(a.items(), b.items(), strict=False)
        return len(a) == len(b) and all(same(k, x) and same(v, y) for (k, v), (x, y) in pairs)
    if isinstance(a, set | frozenset):  # a nan member is never equal to another nan
        return sorted(map(repr, a)) == sorted(map(repr, b))
    return a == b


def through_the_wire(value):
    frame = dumps({"value": encode(value)})
    data = iter([frame[:4], frame[4:]])
    return decode(read_frame(lambda n: next(data))["value"])


def test_two_thousand_random_values_cross_exactly():
    rng = random.Random(20261206)
    for _ in range(2000):
        value = random_value(rng)
        assert same(through_the_wire(value), value), value


def test_subclasses_cross_as_their_plain_base_types():
    class Loud(str):
        def __eq__(self, other):
            return True

        __hash__ = str.__hash__

    Point = collections.namedtuple("Point", "x y")
    crossed = through_the_wire([Loud("x"), Point(1, 2), collections.Counter("aab"), True])
    assert crossed == ["x", (1, 2), {"a": 2, "b": 1}, True]
    assert [type(v) for v in crossed] == [str, tuple, dict, bool]
    assert crossed[0] != "y"  # the always-equal string became a plain one


@pytest.mark.parametrize(
    "value",
    [(x for x in ()), object(), print, type, range(3), bytearray(b"x"), iter([1])],
    ids=["generator", "object", "function", "class", "range", "bytearray", "iterator"],
)
def test_what_is_not_plain_data_does_not_cross(value):
    with pytest.raises(Uncrossable):
        encode(value)


def test_a_value_that_contains_itself_does_not_cross():
    loop: list = []
    loop.append(loop)
    with pytest.raises(Uncrossable):
        encode(loop)


def frame_of(text: bytes) -> bytes:
    return struct.pack(">I", len(text)) + text


HOSTILE_FRAMES = {
    "deep JSON nesting": frame_of(b"{" + b'"v":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    "bare NaN": frame_of(b'{"value": NaN}'),
    "not an object": frame_of(b"[1, 2]"),
    "not UTF-8": frame_of(b'{"value": "\xff"}'),
    "a length past the limit": struct.pack(">I", 2**31) + b"{}",
    "cut short": frame_of(b'{"value": ["N"]}')[:-3],
    "three bytes of header": b"\x00\x00\x01",
}


@pytest.mark.parametrize("name", list(HOSTILE_FRAMES))
def test_hostile_frames_are_refused(name):
    data = HOSTILE_FRAMES[name]
    position = 0

    def read_exactly(n):
        nonlocal position
        chunk = data[position : position + n]
        position += len(chunk)
        return chunk

    with pytest.raises(PlainDataError):
        read_frame(read_exactly)


HOSTILE_VALUES = {
    "unknown tag": ["x", "1"],
    "int with letters": ["i", "12a"],
    "int past Python's digit limit": ["i", "9" * 5000],
    "float in decimal": ["f", "0.5"],
    "float not a string": ["f", 0.5],
    "bytes not hex": ["b", "zz"],
    "odd hex": ["b", "abc"],
    "list inside a set": ["S", [["l", []]]],
    "dict with a list key": ["d", [[["l", []], ["N"]]]],
    "dict entry not a pair": ["d", [[["N"]]]],
    "constant with payload": ["N", 1],
    "two payloads": ["s", "a", "b"],
    "empty": [],
    "tag not a string": [1, 2],
    "complex with one part": ["c", "0x1p+0"],
    "nested past the limit": json.loads(
        '["l", [' * (MAX_DEPTH + 5) + '["N"]' + "]]" * (MAX_DEPTH + 5)
    ),
}


@pytest.mark.parametrize("name", list(HOSTILE_VALUES))
def test_malformed_values_are_refused(name):
    with pytest.raises(PlainDataError):
        decode(HOSTILE_VALUES[name])


def test_five_thousand_mutated_frames_give_data_or_a_plain_data_error():
    """Flip, drop and insert bytes in valid frames: the decoder returns plain data or raises
    PlainDataError, never anything else (no RecursionError, no MemoryError, no TypeError)."""
    rng = random.Random(7)
    frames = [dumps({"id": 1, "value": encode(random_value(rng))}) for _ in range(50)]
    for _ in range(5000):
        data = bytearray(rng.choice(frames))
        for _ in range(rng.randrange(1, 4)):
            at = rng.randrange(len(data))
            action = rng.random()
            if action < 0.4:
                data[at] = rng.randrange(256)
            elif action < 0.7:
                del data[at]
            else:
                data.insert(at, rng.choice(b'[]{}",:0123456789abcdefNTFilfsbtSzdc\\u'))
        position = 0

        def read_exactly(n, data=bytes(data)):
            nonlocal position
            chunk = data[position : position + n]
            position += len(chunk)
            return chunk

        try:
            message = read_frame(read_exactly)
            if message is not None and "value" in message:
                decode(message["value"])
        except PlainDataError:
            pass


def random_json(rng: random.Random, depth: int = 0):
    """Any JSON value, shaped like a tagged value often enough to get past the first check."""
    roll = rng.random()
    if depth > 6 or roll < 0.3:
        return rng.choice([None, True, 0, -1, 1.5, "", "i", "f", "0x1p+0", "ff", "nan", "9" * 50])
    if roll < 0.8:
        tag = rng.choice(["N", "T", "F", "i", "f", "c", "s", "b", "l", "t", "S", "z", "d", "?"])
        return [tag, *(random_json(rng, depth + 1) for _ in range(rng.randrange(3)))]
    if roll < 0.9:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {"k": random_json(rng, depth + 1)}


def test_ten_thousand_random_json_trees_give_data_or_a_plain_data_error():
    rng = random.Random(11)
    decoded = 0
    for _ in range(10_000):
        try:
            decode(random_json(rng))
            decoded += 1
        except PlainDataError:
            pass
    assert decoded > 100  # the generator does reach the decoder's inner branches
