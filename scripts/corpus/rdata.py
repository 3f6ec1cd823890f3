"""Reads objects out of an installed R package's lazy-load database (data/Rdata.rdx + .rdb)
without R: a reader of R's XDR serialization, enough for data frames of strings, numbers
and factors.

    python3 rdata.py DIR/data/Rdata NAME     prints the columns of object NAME as JSON
"""

import bz2
import gzip
import json
import lzma
import struct
import sys
import zlib

NIL, GLOBALENV, UNBOUND, MISSING, BASENAMESPACE = 254, 253, 252, 251, 250
NAMESPACE, PACKAGE, PERSIST, EMPTYENV, BASEENV = 249, 248, 247, 242, 241
ATTRLANG, ATTRLIST, ALTREP, REF = 240, 239, 238, 255
SYM, LIST, CLOS, ENV, PROM, LANG, CHAR, LGL, INT, REAL, CPLX, STR, DOT, VEC, EXPR, RAW, S4 = (
    1, 2, 3, 4, 5, 6, 9, 10, 13, 14, 15, 16, 17, 19, 20, 24, 25)
NA_INT = -(2**31)


class RObject:
    """A value with R attributes (names, class, levels, ...)."""

    def __init__(self, kind, value, attributes=None):
        self.kind, self.value, self.attributes = kind, value, attributes or {}


class Reader:
    def __init__(self, data):
        self.data, self.pos, self.refs = data, 0, []

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("truncated R serialization")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def int(self):
        return struct.unpack(">i", self.take(4))[0]

    def length(self):
        n = self.int()
        if n == -1:
            upper, lower = self.int(), self.int()
            n = (upper << 32) + lower
        return n

    def header(self):
        if self.take(2) != b"X\n":
            raise ValueError("not R's XDR serialization")
        version = self.int()
        self.int(), self.int()  # writer and minimal reader versions
        if version == 3:
            self.take(self.int())  # native encoding

    def pairlist_attributes(self, pairlist):
        attributes = {}
        while isinstance(pairlist, RObject) and pairlist.kind == LIST:
            tag, value, pairlist = pairlist.value
            attributes[tag] = value
        return attributes

    def item(self):
        flags = self.int()
        kind = flags & 0xFF
        has_attr, has_tag = flags & (1 << 9), flags & (1 << 10)
        if kind in (NIL, GLOBALENV, UNBOUND, MISSING, BASENAMESPACE, EMPTYENV, BASEENV):
            return None
        if kind == REF:
            index = flags >> 8 or self.int()
            return self.refs[index - 1]
        if kind in (PERSIST, NAMESPACE, PACKAGE):
            self.take(4)  # a string vector's leading 0
            value = [self.item() for _ in range(self.int())]
            self.refs.append(value)
            return value
        if kind == SYM:
            name = self.item()
            self.refs.append(name)
            return name
        if kind == ENV:
            env = RObject(ENV, None)
            self.int()  # locked
            self.refs.append(env)
            env.value = (self.item(), self.item(), self.item())  # enclosure, frame, hash table
            env.attributes = self.pairlist_attributes(self.item())
            return env
        if kind in (LIST, LANG, CLOS, PROM, DOT, ATTRLANG, ATTRLIST):
            attributes = self.pairlist_attributes(self.item()) if has_attr else {}
            tag = self.item() if has_tag else None
            car = self.item()
            cdr = self.item()
            return RObject(LIST if kind in (LIST, ATTRLIST) else kind, (tag, car, cdr), attributes)
        if kind == ALTREP:
            info, state, attributes = self.item(), self.item(), self.item()
            return RObject(ALTREP, (info, state), self.pairlist_attributes(attributes))
        if kind == CHAR:
            n = self.int()
            return None if n == -1 else self.take(n).decode("utf-8", errors="replace")
        if kind in (LGL, INT):
            n = self.length()
            value = [None if v == NA_INT else v for v in struct.unpack(f">{n}i", self.take(4 * n))]
        elif kind == REAL:
            n = self.length()
            value = list(struct.unpack(f">{n}d", self.take(8 * n)))
        elif kind == CPLX:
            n = self.length()
            value = list(struct.unpack(f">{2 * n}d", self.take(16 * n)))
        elif kind in (STR, VEC, EXPR):
            value = [self.item() for _ in range(self.length())]
        elif kind == RAW:
            value = self.take(self.length())
        elif kind == S4:
            value = None
        else:
            raise ValueError(f"unsupported R type {kind}")
        attributes = self.pairlist_attributes(self.item()) if has_attr else {}
        return RObject(kind, value, attributes)


def unserialize(data):
    reader = Reader(data)
    reader.header()
    return reader.item()


def decompress(blob, method):
    """One object of an .rdb: 4-byte length, then the compressed serialization."""
    body = blob[4:]
    if method == 1:
        return zlib.decompress(body)
    kind, body = body[:1], body[1:]
    if kind == b"Z":  # R's xz: a raw LZMA2 stream
        return lzma.decompress(body, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 9}])
    return {b"2": bz2.decompress, b"1": zlib.decompress, b"0": bytes}[kind](body)


def lazy_load(prefix, name):
    """Object `name` from the lazy-load database prefix.rdx/prefix.rdb."""
    index = unserialize(gzip.decompress(open(prefix + ".rdx", "rb").read()))
    fields = dict(zip(index.attributes["names"].value, index.value))
    variables = fields["variables"]
    offsets = dict(zip(variables.attributes["names"].value, variables.value))
    if name not in offsets:
        raise KeyError(f"{prefix}.rdx has no object {name!r}")
    offset, size = offsets[name].value
    method = fields["compressed"].value[0]
    with open(prefix + ".rdb", "rb") as f:
        f.seek(int(offset))
        blob = f.read(int(size))
    return unserialize(decompress(blob, method))


def columns(frame):
    """A data frame's columns as plain lists (factors as their level strings)."""
    out = {}
    for column, values in zip(frame.attributes["names"].value, frame.value):
        if "levels" in values.attributes:
            levels = values.attributes["levels"].value
            out[column] = [None if v is None else levels[v - 1] for v in values.value]
        else:
            out[column] = values.value
    return out


if __name__ == "__main__":
    print(json.dumps(columns(lazy_load(sys.argv[1], sys.argv[2])), ensure_ascii=False)[:2000])
