"""A streaming JSON reader for request bodies that carry one huge string.

`npm publish` sends its tarball base64-encoded inside a JSON document. `json.loads`
would hold the body, the decoded string and the tarball at once (several times the
tarball). This reader walks the document as it arrives and builds ordinary Python
values for everything except the strings a caller names by path: those are handed, in
pieces, to a sink as they stream past. A callback sees each top-level member as soon as
it is complete, so a caller can refuse a document (a version already published) before
the big string is read at all.
"""
import json
from typing import BinaryIO, Callable, Optional

WHITESPACE = b" \t\r\n"
CHUNK = 256 * 1024


class JSONError(ValueError):
    """The body is not the JSON document expected (answered 400)."""


class TooLargeJSON(ValueError):
    """The document, not counting streamed strings, exceeds the limit (answered 413)."""


# A sink receives the pieces of one streamed string: open(path) → a callable taking
# raw (still JSON-escaped) bytes, and a final call with None when the string ends.
SinkFactory = Callable[[tuple], Callable[[Optional[bytes]], None]]


class StreamingJSON:
    def __init__(self, stream: BinaryIO, *, limit: int, max_depth: int = 64,
                 streamed: Callable[[tuple], bool] = lambda path: False,
                 sink: Optional[SinkFactory] = None,
                 on_member: Callable[[str, object], None] = lambda key, value: None,
                 read=None):
        self.stream, self.limit, self.max_depth = stream, limit, max_depth
        self.streamed, self.sink, self.on_member = streamed, sink, on_member
        self._read = read or (lambda size: stream.read(size))
        self.buf, self.pos, self.kept = b"", 0, 0

    # Reading

    def _fill(self) -> bool:
        if self.pos < len(self.buf):
            return True
        self.buf, self.pos = self._read(CHUNK), 0
        return bool(self.buf)

    def _peek(self) -> bytes:
        if not self._fill():
            raise JSONError("the document ends too early")
        return self.buf[self.pos:self.pos + 1]

    def _skip_ws(self) -> bytes:
        while True:
            if not self._fill():
                raise JSONError("the document ends too early")
            while self.pos < len(self.buf) and self.buf[self.pos] in WHITESPACE:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos:self.pos + 1]

    def _expect(self, char: bytes) -> None:
        if self._skip_ws() != char:
            raise JSONError(f"expected {char.decode()!r} in the JSON document")
        self.pos += 1

    def _count(self, n: int) -> None:
        self.kept += n
        if self.kept > self.limit:
            raise TooLargeJSON(f"the JSON document is larger than {self.limit} bytes")

    # Parsing

    def parse(self) -> dict:
        """Read one JSON object to its end; return it without the streamed strings."""
        if self._skip_ws() != b"{":
            raise JSONError("the body is not a JSON object")
        document = self._object((), top=True)
        while self._fill():
            if self.buf[self.pos:].strip(WHITESPACE):
                raise JSONError("unexpected data after the JSON document")
            self.pos = len(self.buf)
        return document

    def _value(self, path: tuple):
        if len(path) > self.max_depth:
            raise JSONError(f"the JSON document is nested deeper than {self.max_depth} levels")
        char = self._skip_ws()
        if char == b"{":
            return self._object(path)
        if char == b"[":
            return self._array(path)
        if char == b'"':
            if self.sink is not None and self.streamed(path):
                self._stream_string(self.sink(path))
                return None
            return self._string()
        return self._scalar()

    def _object(self, path: tuple, top: bool = False) -> dict:
        self.pos += 1
        result: dict = {}
        if self._skip_ws() == b"}":
            self.pos += 1
            return result
        while True:
            if self._skip_ws() != b'"':
                raise JSONError("an object key must be a string")
            key = self._string()
            self._expect(b":")
            value = self._value(path + (key,))
            result[key] = value
            if top:
                self.on_member(key, value)
            char = self._skip_ws()
            self.pos += 1
            if char == b"}":
                return result
            if char != b",":
                raise JSONError("expected ',' or '}' in an object")

    def _array(self, path: tuple) -> list:
        self.pos += 1
        result: list = []
        if self._skip_ws() == b"]":
            self.pos += 1
            return result
        while True:
            result.append(self._value(path + (len(result),)))
            char = self._skip_ws()
            self.pos += 1
            if char == b"]":
                return result
            if char != b",":
                raise JSONError("expected ',' or ']' in an array")

    def _raw_string(self, emit: Callable[[bytes], None]) -> None:
        """Pass the raw bytes of a string (after its opening quote) to emit, in pieces."""
        self.pos += 1
        escaped = False
        while True:
            if not self._fill():
                raise JSONError("a string is not terminated")
            start = self.pos
            buf = self.buf
            i = start
            if escaped:
                i += 1
                escaped = False
            while True:
                quote, backslash = buf.find(b'"', i), buf.find(b"\\", i)
                if backslash != -1 and (quote == -1 or backslash < quote):
                    if backslash + 1 < len(buf):
                        i = backslash + 2
                        continue
                    escaped = True  # the escaped character is in the next chunk
                    i = len(buf)
                    break
                if quote == -1:
                    i = len(buf)
                    break
                emit(buf[start:quote])
                self.pos = quote + 1
                return
            emit(buf[start:i])
            self.pos = i

    def _string(self) -> str:
        parts: list[bytes] = []

        def keep(piece: bytes) -> None:
            self._count(len(piece))
            parts.append(piece)

        self._raw_string(keep)
        try:
            return json.loads(b'"' + b"".join(parts) + b'"')
        except ValueError:
            raise JSONError("a string in the document is not valid JSON")

    def _stream_string(self, sink: Callable[[Optional[bytes]], None]) -> None:
        self._raw_string(sink)
        sink(None)

    def _scalar(self):
        token = bytearray()
        while True:
            if not self._fill():
                break
            start = self.pos
            while self.pos < len(self.buf) and self.buf[self.pos] in b"+-.0123456789eEtrufalsn":
                self.pos += 1
            token += self.buf[start:self.pos]
            if len(token) > 64:
                raise JSONError("a number in the document is too long")
            if self.pos < len(self.buf):
                break
        self._count(len(token))
        try:
            return json.loads(bytes(token))
        except ValueError:
            raise JSONError("the document is not valid JSON")
