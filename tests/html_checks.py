"""Helpers shared by test_html.py and test_report.py: HTML well-formedness and self-containment."""

from __future__ import annotations

import re
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Balance(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.stack[-1] if self.stack else 'nothing'}>")
            if tag in self.stack:  # resynchronise so that one slip is reported once
                while self.stack and self.stack.pop() != tag:
                    pass
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1] not in ("style", "script"):
            self.text.append(data)


def check_html(text: str) -> str:
    """Assert every tag is closed in order; return the visible text (entities decoded)."""
    p = _Balance()
    p.feed(text)
    p.close()
    assert not p.problems, p.problems[:5]
    assert not p.stack, f"unclosed tags: {p.stack[-5:]}"
    return "".join(p.text)


def external_refs(text: str) -> list[str]:
    """Every src/href/url() that would make a browser fetch something (data: URIs and #anchors are fine)."""
    refs = re.findall(r'(?:src|href|xlink:href)\s*=\s*["\']([^"\']*)["\']', text)
    refs += re.findall(r"url\(\s*['\"]?([^'\")]*)", text)
    return [r for r in refs if not (r.startswith("data:") or r.startswith("#"))]
