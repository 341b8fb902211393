"""A minimal, valid PDF 1.4 writer for text documents (the signed agreements).

The agreements are a title and lines of text, so a page of Helvetica with WinAnsi encoding (which
covers Spanish and English) is all that is needed; no third-party PDF library is pulled in for it.
"""

from __future__ import annotations

from collections.abc import Sequence

PAGE_WIDTH, PAGE_HEIGHT = 595, 842  # A4 in points
MARGIN, LEADING = 56, 15
LINES_PER_PAGE = (PAGE_HEIGHT - 2 * MARGIN) // LEADING
WRAP = 92  # characters per line of 10 pt Helvetica within the margins, conservatively


def _escape(text: str) -> bytes:
    raw = text.encode("cp1252", errors="replace")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def wrap(line: str, width: int = WRAP) -> list[str]:
    words, out, current = line.split(" "), [], ""
    for word in words:
        while len(word) > width:  # a hash or a URL: cut it
            if current:
                out.append(current)
                current = ""
            out.append(word[:width])
            word = word[width:]
        candidate = f"{current} {word}" if current else word
        if len(candidate) > width:
            out.append(current)
            current = word
        else:
            current = candidate
    out.append(current)
    return out


def _page_stream(title: str | None, lines: Sequence[str]) -> bytes:
    parts = [b"BT", f"{MARGIN} {PAGE_HEIGHT - MARGIN} Td".encode()]
    if title is not None:
        parts += [b"/F2 14 Tf", b"(" + _escape(title) + b") Tj", f"0 -{LEADING * 2} Td".encode()]
    parts += [b"/F1 10 Tf", f"{LEADING} TL".encode()]
    for line in lines:
        parts.append(b"(" + _escape(line) + b") Tj T*")
    parts.append(b"ET")
    return b"\n".join(parts)


def render(title: str, lines: Sequence[str], *, author: str = "Cadencia") -> bytes:
    """A PDF with ``title`` on the first page and ``lines`` (wrapped, paginated) under it."""
    wrapped = [w for line in lines for w in wrap(line)]
    first = max(LINES_PER_PAGE - 2, 1)
    chunks = [wrapped[:first]] + [wrapped[i:i + LINES_PER_PAGE] for i in range(first, len(wrapped), LINES_PER_PAGE)]
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # filled in once the page tree exists
    pages = add(b"")
    regular = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    bold = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>")
    kids = []
    for index, chunk in enumerate(chunks):
        stream = _page_stream(title if index == 0 else None, chunk)
        content = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        kids.append(add(
            b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %d %d] /Contents %d 0 R "
            b"/Resources << /Font << /F1 %d 0 R /F2 %d 0 R >> >> >>"
            % (pages, PAGE_WIDTH, PAGE_HEIGHT, content, regular, bold)
        ))
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % pages
    objects[pages - 1] = (b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % k for k in kids)
                          + b"] /Count %d >>" % len(kids))
    info = add(b"<< /Title (" + _escape(title) + b") /Producer (" + _escape(author) + b") >>")

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, catalog, info, xref)
    return bytes(out)
