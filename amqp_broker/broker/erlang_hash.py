"""Erlang's ``erlang:phash2/1`` and the consistent-hash exchange's jump hash, bit for bit.

RabbitMQ's x-consistent-hash exchange picks a bucket with ``jump_consistent_hash(phash2(Value),
Buckets)`` seeded through ``rand:seed_s(exs1024, {K, K, K})``. Reproducing both here gives the
same queue as RabbitMQ for the same routing key (or header or property value), so a workload
moved between the two brokers keeps its partitioning.

``phash2`` is ERTS's make_hash2 (erts/emulator/beam/utils.c: Bob Jenkins' lookup2 mix over the
term's parts, documented as portable across releases and machines) masked to 27 bits. Only the
terms the exchange can hash are covered: binaries, atoms, integers, floats, tuples, and lists of
those (field-table arrays and tables).
"""

from __future__ import annotations

import struct
from typing import Any

_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF

_HCONST = 0x9E3779B9
# (HCONST * n) mod 2^32, as utils.c names them.
_HCONST_2 = 0x3C6EF372
_HCONST_3 = 0xDAA66D2B
_HCONST_4 = 0x78DDE6E4
_HCONST_9 = 0x8FF34781
_HCONST_10 = 0x2E2AC13A
_HCONST_11 = 0xCC623AF3
_HCONST_12 = 0x6A99B4AC
_HCONST_13 = 0x08D12E65


class Atom(str):
    """An Erlang atom (``undefined``, ``true``, ``longstr``), hashed as atoms are."""

    __slots__ = ()


UNDEFINED = Atom("undefined")


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = (a - b - c) & _M32; a ^= c >> 13
    b = (b - c - a) & _M32; b ^= (a << 8) & _M32
    c = (c - a - b) & _M32; c ^= b >> 13
    a = (a - b - c) & _M32; a ^= c >> 12
    b = (b - c - a) & _M32; b ^= (a << 16) & _M32
    c = (c - a - b) & _M32; c ^= b >> 5
    a = (a - b - c) & _M32; a ^= c >> 3
    b = (b - c - a) & _M32; b ^= (a << 10) & _M32
    c = (c - a - b) & _M32; c ^= b >> 15
    return a, b, c


def _uint32_hash_2(x: int, y: int, const: int, h: int) -> int:
    return _mix((const + x) & _M32, (const + y) & _M32, h)[2]


def _block_hash(data: bytes, initval: int) -> int:
    a = b = _HCONST
    c = initval
    length = len(data)
    full = length - length % 12
    for i in range(0, full, 12):
        a = (a + int.from_bytes(data[i:i + 4], "little")) & _M32
        b = (b + int.from_bytes(data[i + 4:i + 8], "little")) & _M32
        c = (c + int.from_bytes(data[i + 8:i + 12], "little")) & _M32
        a, b, c = _mix(a, b, c)
    tail = data[full:]
    c = (c + length) & _M32
    # The last 0-11 bytes: a and b take theirs little-endian; c's low byte is the length's.
    a = (a + int.from_bytes(tail[0:4], "little")) & _M32
    b = (b + int.from_bytes(tail[4:8], "little")) & _M32
    c = (c + (int.from_bytes(tail[8:11], "little") << 8)) & _M32
    return _mix(a, b, c)[2]


def _atom_hash(name: str) -> int:
    # atom.c's atom_hash: hashpjw over the Latin-1 text.
    h = 0
    for v in name.encode("latin-1", "replace"):
        h = ((h << 4) + v) & _M32
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
            h ^= g
    return h


def _small_hash(value: int, h: int) -> int:
    if -(1 << 27) <= value < (1 << 27):  # IS_SSMALL28: SINT32_HASH
        if value < 0:
            h = _uint32_hash_2(-value & _M32, 0, _HCONST, h)
        return _uint32_hash_2(value & _M32, 0, _HCONST, h)
    # NOT_SSMALL28_HASH, and bignums (64-bit digits) likewise, two 32-bit halves at a time.
    const = _HCONST_10 if value < 0 else _HCONST_11
    magnitude = -value if value < 0 else value
    while True:
        h = _uint32_hash_2(magnitude & _M32, (magnitude >> 32) & _M32, const, h)
        magnitude >>= 64
        if not magnitude:
            return h


def _hash2(term: Any, h: int) -> int:
    if isinstance(term, Atom) or isinstance(term, bool) or term is None:
        name = term if isinstance(term, Atom) else (
            "undefined" if term is None else ("true" if term else "false"))
        value = _atom_hash(name)
        return value if h == 0 else _uint32_hash_2(value, 0, _HCONST_3, h)
    if isinstance(term, int):
        return _small_hash(term, h)
    if isinstance(term, (bytes, bytearray, str)):
        data = term.encode("utf-8") if isinstance(term, str) else bytes(term)
        const = (_HCONST_13 + h) & _M32
        return _block_hash(data, const) if data else const
    if isinstance(term, float):
        if term == 0.0:
            term = 0.0
        low, high = struct.unpack("<II", struct.pack("<d", term))
        return _uint32_hash_2(high, low, _HCONST_12, h)
    if isinstance(term, tuple):
        h = _uint32_hash_2(len(term), 0, _HCONST_9, h)
        # Elements are pushed last-first and popped first-last: the first is hashed first.
        for element in term:
            h = _hash2(element, h)
        return h
    if isinstance(term, list):
        return _list_hash(term, h)
    raise TypeError(f"no Erlang term for {type(term).__name__}")


def _is_byte(item: Any) -> bool:
    return isinstance(item, int) and not isinstance(item, bool) and 0 <= item < 256


def _list_hash(items: list, h: int) -> int:
    # A proper list: runs of byte-valued integers are packed four to a word (the string case);
    # any other element is hashed on its own, then the walk continues with the tail.
    i, n = 0, len(items)
    if n == 0:
        return 3468870702 if h == 0 else _uint32_hash_2(2, 0, _HCONST_2, h)  # NIL
    while i < n:
        shifted = count = 0
        while i < n and _is_byte(items[i]):
            shifted = ((shifted << 8) + items[i]) & _M32
            if count == 3:
                h = _uint32_hash_2(shifted, 0, _HCONST_4, h)
                count = shifted = 0
            else:
                count += 1
            i += 1
        if count:
            h = _uint32_hash_2(shifted, 0, _HCONST_4, h)
        if i < n:
            h = _hash2(items[i], h)
            i += 1
    # The final tail, [] (pushed, then hashed after the last element).
    return _uint32_hash_2(2, 0, _HCONST_2, h)


def phash2(term: Any) -> int:
    """``erlang:phash2(Term)``: str/bytes are binaries, :class:`Atom` (and None, True, False)
    atoms, tuples tuples, lists lists."""
    return _hash2(term, 0) & ((1 << 27) - 1)


# -- rand's exs1024 (xorshift1024*) seeded from a triple, and the jump hash ---------------------


def _exs1024_state(key: int) -> list[int]:
    m21 = (1 << 21) - 1
    b1 = (((key & m21) + 1) * 2097131) & m21
    b2 = (((key & m21) + 1) * 2097133) & m21
    b3 = (((key & m21) + 1) * 2097143) & m21
    r = (b1 << 43) | (b2 << 22) | (b3 << 1) | 1
    state = []
    for _ in range(16):  # exs1024_gen1024: xorshift64* outputs, consed (so reversed)
        r ^= r >> 12
        r ^= (r << 25) & _M64
        r ^= r >> 27
        state.append((r * 2685821657736338717) & _M64)
    state.reverse()
    return state


def jump_consistent_hash(key: int, buckets: int) -> int:
    """The bucket (0 .. buckets-1) of integer ``key``, as rabbit_exchange_type_consistent_hash's
    jump_consistent_hash/2 computes it."""
    if buckets == 1:
        return 0
    state = _exs1024_state(key)
    p = 0
    b, j = -1, 0
    while j < buckets:
        b = j
        # xorshift1024*: state[p] is s0, state[p+1] s1 (the list rotates through 16 words).
        s0 = state[p]
        p = (p + 1) & 15
        s1 = state[p]
        s1 ^= (s1 << 31) & _M64
        s1 ^= s1 >> 11
        s0 ^= s0 >> 30
        state[p] = s0 ^ s1
        value = (state[p] * 1181783497276652981) & _M64
        r = (value >> 11) * (2.0 ** -53)
        if r == 0.0:  # Erlang would fail with badarith; never seen in practice
            return b
        j = int((b + 1) / r)
    return b
