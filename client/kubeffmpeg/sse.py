"""A Server-Sent Events parser over lines (the `text/event-stream` format): the same state
machine for httpx's sync and async line iterators."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field


@dataclass
class RawEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


@dataclass
class Parser:
    last_id: str | None = None
    _data: list[str] = field(default_factory=list)
    _event: str = ""
    _id: str | None = None
    _retry: int | None = None

    def feed(self, line: str) -> RawEvent | None:
        """One line without its line ending; an event when the line ends one."""
        if line == "":
            if not self._data and not self._event:
                return None
            ev = RawEvent(self._event or "message", "\n".join(self._data), self.last_id, self._retry)
            self._data, self._event, self._retry = [], "", None
            return ev
        if line.startswith(":"):
            return None  # a comment: the server's heartbeat
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None


def parse(lines: Iterator[str], parser: Parser | None = None) -> Iterator[RawEvent]:
    p = parser or Parser()
    for line in lines:
        ev = p.feed(line.rstrip("\r\n"))
        if ev is not None:
            yield ev


async def aparse(lines: AsyncIterator[str], parser: Parser | None = None) -> AsyncIterator[RawEvent]:
    p = parser or Parser()
    async for line in lines:
        ev = p.feed(line.rstrip("\r\n"))
        if ev is not None:
            yield ev
