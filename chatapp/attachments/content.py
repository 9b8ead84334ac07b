"""What an upload is: its type, sniffed from its bytes; its filename, kept as data; and the
`Content-Disposition` that serves it back.

The type comes from `filetype` (pure Python, no libmagic: the app runs with only Python),
which recognises binary formats by their magic numbers in the first 8 KiB and never
guesses otherwise; text is recognised here (UTF-8 without control characters). Anything
else is `application/octet-stream`. The client's own Content-Type is never read.
"""
import codecs
import re
import unicodedata
from urllib.parse import quote

import filetype

SNIFF_BYTES = 8192  # all that filetype reads
OCTET_STREAM = "application/octet-stream"
TEXT = "text/plain"
# Shown in the page (`inline`): raster images browsers display. Every other type, other
# images (TIFF, PSD...) included, is downloaded (`attachment`). filetype never answers SVG
# (text that can carry scripts); were it to, SVG would still not be inline.
INLINE_TYPES = frozenset({"image/png", "image/apng", "image/jpeg", "image/gif", "image/webp",
                          "image/bmp", "image/avif", "image/x-icon"})
FILENAME_MAX = 255  # code points
EXTENSION_MAX = 16
UNNAMED = "file"
# Bidirectional controls can make "invoice\u202efdp.exe" read as "invoiceexe.pdf".
_BIDI = dict.fromkeys(map(ord, "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                               "\u2066\u2067\u2068\u2069"), "_")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
_UNSAFE_IN_FALLBACK = re.compile(r"[^A-Za-z0-9 !#$&'()+,.;=@\[\]^_`{}~-]")
_ATTR_CHAR = "!#$&+-.^_`|~"  # RFC 5987 attr-char besides letters and digits


def sniff(head, whole):
    """The MIME type of a file whose first bytes are `head` (`whole`: that is all of it)."""
    kind = filetype.guess(bytes(head))
    if kind is not None:
        return kind.mime
    return TEXT if looks_like_text(head, whole) else OCTET_STREAM


def looks_like_text(head, whole):
    """UTF-8 without control characters (tab, newlines and form feed aside); a character
    cut at the end of `head` is not held against it."""
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(bytes(head), final=whole)
    except UnicodeDecodeError:
        return False
    return _CONTROL.search(text) is None


def clean_filename(raw):
    """The filename as data: control, bidi and surrogate characters replaced by `_`, trimmed,
    at most FILENAME_MAX code points (keeping a short extension). Separators stay: it is
    never used as a path."""
    name = "".join("_" if unicodedata.category(c) in ("Cc", "Cs") else c for c in raw or "")
    name = name.translate(_BIDI).strip()
    if len(name) > FILENAME_MAX:
        stem, dot, extension = name.rpartition(".")
        if dot and stem and len(extension) <= EXTENSION_MAX:
            name = stem[:FILENAME_MAX - len(extension) - 1].rstrip() + "." + extension
        else:
            name = name[:FILENAME_MAX].rstrip()
    return name or UNNAMED


def inline(content_type):
    return content_type in INLINE_TYPES


def disposition(filename, content_type):
    """RFC 6266: `inline` for displayable images, else `attachment`; an ASCII `filename`
    for old clients and the exact name as `filename*=UTF-8''...`."""
    kind = "inline" if inline(content_type) else "attachment"
    return (f'{kind}; filename="{ascii_fallback(filename)}"; '
            f"filename*=UTF-8''{quote(filename, safe=_ATTR_CHAR)}")


def ascii_fallback(filename):
    """Accents dropped, anything that could end the quoted string or name a path replaced."""
    simple = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode("ascii")
    simple = _UNSAFE_IN_FALLBACK.sub("_", simple).strip(" .")
    return simple or UNNAMED
