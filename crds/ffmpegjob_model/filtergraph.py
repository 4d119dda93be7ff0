"""FFmpeg filtergraphs (`-vf`, `-af`, `-filter_complex`) split into their filters: the one parser
the safety rules, the split-and-stitch rules and the GPU rewrite share, so that all three see
the same filters in the same text.

A graph is filters separated by `,` (a chain) or `;` (chains), each optionally with `[labels]`
before and after, its arguments after `=`. Inside single quotes, and after a backslash, `,` and
`;` are text. Standard library only (the worker checks specs before pydantic is loaded)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple

# leading labels, the filter (name and arguments), trailing labels and the separator.
_PART = re.compile(r"^(\s*(?:\[[^\]]*\]\s*)*)(.*?)((?:\s*\[[^\]]*\])*\s*[,;]?\s*)$", re.DOTALL)


class FilterPart(NamedTuple):
    lead: str  # the input labels and the space before the filter
    name: str  # as written (an instance id `@x` included), stripped
    args: str  # `=arguments`, or "" for a filter without them
    tail: str  # the output labels, the separator and the space after it

    def text(self) -> str:
        return self.lead + self.name + self.args + self.tail


def filter_parts(graph: str) -> list[FilterPart]:
    """Every filter of `graph` in order; `"".join(p.text() for p in parts)` gives the graph back
    (but for space around a filter's name)."""
    pieces: list[str] = []
    buf, quote, i = "", False, 0
    while i < len(graph):
        c = graph[i]
        if c == "\\" and i + 1 < len(graph):
            buf += graph[i : i + 2]
            i += 2
            continue
        if c == "'":
            quote = not quote
        buf += c
        if c in ",;" and not quote:
            pieces.append(buf)
            buf = ""
        i += 1
    if buf:
        pieces.append(buf)
    out = []
    for piece in pieces:
        m = _PART.match(piece)
        assert m is not None  # the pattern matches any text
        lead, body, tail = m.groups()
        name, eq, args = body.partition("=")
        out.append(FilterPart(lead, name.strip(), eq + args, tail))
    return out


def filter_name(name: str) -> str:
    """The filter a name as written stands for: `scale@big` and `SCALE` are `scale`."""
    return name.split("@", 1)[0].lower()


def filters(graph: str) -> Iterator[tuple[str, str]]:
    """(filter, its argument string without the `=`) for each filter of the graph."""
    for p in filter_parts(graph):
        if p.name:
            yield filter_name(p.name), p.args[1:]
