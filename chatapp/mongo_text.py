"""MongoDB's text search rules, in Python: what a `$text` query matches, for the embedded store.

What a `{"$text": {"$search": s}}` query matches on MongoDB (text index version 3, the one
MongoDB has built since 3.2), reproduced for the index chatapp declares
(`default_language: "none"`: no stemming, no stop words):

- the search string is read as MongoDB's parser reads it: words split on space, LF, VT, FF,
  CR; `"..."` is a phrase; `-` before a word or phrase (after a space) negates it;
- each word is cut into terms at delimiters (Unicode White_Space, Dash, Hyphen, Quotation_Mark,
  Terminal_Punctuation, STerm and Pattern_Syntax, the apostrophe included), and every term is
  folded: simple case folding, then diacritics removed (Unicode's Diacritic characters
  dropped, a letter with marks taken to its base letter when that is one character);
- a document matches when one of its text fields holds one of the positive terms as a whole
  term, none of the negated terms, and contains every positive phrase and no negated one,
  a phrase being compared as a substring of the folded text (not at term boundaries).

The tables are those of Unicode 8.0.0, which MongoDB generates its own from
(src/mongo/db/fts/unicode). Case folding and decompositions come from Python's `unicodedata`
and `str.casefold`: they agree with MongoDB's for every character Unicode 8.0 had; a character
added since (e.g. Georgian Mtavruli, Osage) may fold here and not there.
`chatapp.embedded_text` answers `$text` on the embedded store with these rules.
"""
import re
import unicodedata

from mongomock import OperationFailure

# Unicode 8.0.0 PropList.txt: the properties MongoDB's tokenizer splits at.
WHITE_SPACE = "9-D 20 85 A0 1680 2000-200A 2028 2029 202F 205F 3000"
DASH = ("2D 58A 5BE 1400 1806 2010-2015 2053 207B 208B 2212 2E17 2E1A 2E3A-2E3B 2E40 301C 3030 "
        "30A0 FE31-FE32 FE58 FE63 FF0D")
HYPHEN = "2D AD 58A 1806 2010-2011 2E17 30FB FE63 FF0D FF65"
QUOTATION_MARK = ("22 27 AB BB 2018-201F 2039-203A 2E42 300C-300F 301D-301F FE41-FE44 FF02 "
                  "FF07 FF62-FF63")
TERMINAL_PUNCTUATION = (
    "21 2C 2E 3A-3B 3F 37E 387 589 5C3 60C 61B 61F 6D4 700-70A 70C 7F8-7F9 830-83E 85E 964-965 "
    "E5A-E5B F08 F0D-F12 104A-104B 1361-1368 166D-166E 16EB-16ED 1735-1736 17D4-17D6 17DA "
    "1802-1805 1808-1809 1944-1945 1AA8-1AAB 1B5A-1B5B 1B5D-1B5F 1C3B-1C3F 1C7E-1C7F 203C-203D "
    "2047-2049 2E2E 2E3C 2E41 3001-3002 A4FE-A4FF A60D-A60F A6F3-A6F7 A876-A877 A8CE-A8CF A92F "
    "A9C7-A9C9 AA5D-AA5F AADF AAF0-AAF1 ABEB FE50-FE52 FE54-FE57 FF01 FF0C FF0E FF1A-FF1B FF1F "
    "FF61 FF64 1039F 103D0 10857 1091F 10A56-10A57 10AF0-10AF5 10B3A-10B3F 10B99-10B9C "
    "11047-1104D 110BE-110C1 11141-11143 111C5-111C6 111CD 111DE-111DF 11238-1123C 112A9 "
    "115C2-115C5 115C9-115D7 11641-11642 1173C-1173E 12470-12474 16A6E-16A6F 16AF5 16B37-16B39 "
    "16B44 1BC9F 1DA87-1DA8A")
STERM = (
    "21 2E 3F 589 61F 6D4 700-702 7F9 964-965 104A-104B 1362 1367-1368 166E 1735-1736 1803 1809 "
    "1944-1945 1AA8-1AAB 1B5A-1B5B 1B5E-1B5F 1C3B-1C3C 1C7E-1C7F 203C-203D 2047-2049 2E2E 2E3C "
    "3002 A4FF A60E-A60F A6F3 A6F7 A876-A877 A8CE-A8CF A92F A9C8-A9C9 AA5D-AA5F AAF0-AAF1 ABEB "
    "FE52 FE56-FE57 FF01 FF0E FF1F FF61 10A56-10A57 11047-11048 110BE-110C1 11141-11143 "
    "111C5-111C6 111CD 111DE-111DF 11238-11239 1123B-1123C 112A9 115C2-115C3 115C9-115D7 "
    "11641-11642 1173C-1173E 16A6E-16A6F 16AF5 16B37-16B38 16B44 1BC9F 1DA88")
PATTERN_SYNTAX = (
    "21-2F 3A-40 5B-5E 60 7B-7E A1-A7 A9 AB-AC AE B0-B1 B6 BB BF D7 F7 2010-2027 2030-203E "
    "2041-2053 2055-205E 2190-245F 2500-2775 2794-2BFF 2E00-2E7F 3001-3003 3008-3020 3030 "
    "FD3E-FD3F FE45-FE46")
DIACRITIC = (
    "5E 60 A8 AF B4 B7 B8 2B0-34E 350-357 35D-362 374-375 37A 384-385 483-487 559 591-5A1 "
    "5A3-5BD 5BF 5C1-5C2 5C4 64B-652 657-658 6DF-6E0 6E5-6E6 6EA-6EC 730-74A 7A6-7B0 7EB-7F5 "
    "818-819 8E3-8FE 93C 94D 951-954 971 9BC 9CD A3C A4D ABC ACD B3C B4D BCD C4D CBC CCD D4D "
    "DCA E47-E4C E4E EC8-ECC F18-F19 F35 F37 F39 F3E-F3F F82-F84 F86-F87 FC6 1037 1039-103A "
    "1087-108D 108F 109A-109B 17C9-17D3 17DD 1939-193B 1A75-1A7C 1A7F 1AB0-1ABD 1B34 1B44 "
    "1B6B-1B73 1BAA-1BAB 1C36-1C37 1C78-1C7D 1CD0-1CE8 1CED 1CF4 1CF8-1CF9 1D2C-1D6A 1DC4-1DCF "
    "1DF5 1DFD-1DFF 1FBD 1FBF-1FC1 1FCD-1FCF 1FDD-1FDF 1FED-1FEF 1FFD-1FFE 2CEF-2CF1 2E2F "
    "302A-302F 3099-309C 30FC A66F A67C-A67D A67F A69C-A69D A6F0-A6F1 A717-A721 A788 A7F8-A7F9 "
    "A8C4 A8E0-A8F1 A92B-A92E A953 A9B3 A9C0 A9E5 AA7B-AA7D AABF-AAC2 AAF6 AB5B-AB5F ABEC-ABED "
    "FB1E FE20-FE2F FF3E FF40 FF70 FF9E-FF9F FFE3 102E0 10AE5-10AE6 110B9-110BA 11133-11134 "
    "11173 111C0 111CA-111CC 11235-11236 112E9-112EA 1133C 1134D 11366-1136C 11370-11374 "
    "114C2-114C3 115BF-115C0 1163F 116B6-116B7 1172B 16AF0-16AF4 16F8F-16F9F 1D167-1D169 "
    "1D16D-1D172 1D17B-1D182 1D185-1D18B 1D1AA-1D1AD 1E8D0-1E8D6")


def codepoints(table):
    """The code points a table names ("hex" or "hex-hex", space-separated)."""
    points = set()
    for item in table.split():
        low, _, high = item.partition("-")
        points.update(range(int(low, 16), int(high or low, 16) + 1))
    return points


DELIMITERS = frozenset().union(*(codepoints(t) for t in (
    WHITE_SPACE, DASH, HYPHEN, QUOTATION_MARK, TERMINAL_PUNCTUATION, STERM, PATTERN_SYNTAX)))
DIACRITICS = frozenset(codepoints(DIACRITIC))
_TERMS = re.compile("[^%s]+" % "".join(re.escape(chr(cp)) for cp in sorted(DELIMITERS)))


class _FoldTable(dict):
    """`str.translate` table: each code point folded (lower-cased, then its diacritics removed,
    None when it is a diacritic itself), computed when first met."""

    def __missing__(self, cp):
        folded = _strip_diacritics(_lower(chr(cp)))
        self[cp] = value = None if folded == "" else folded
        return value


def _lower(ch):
    """Unicode simple case folding (CaseFolding.txt statuses C and S, as MongoDB's table)."""
    folded = ch.casefold()
    if len(folded) == 1:
        return folded
    lowered = ch.lower()  # a full (F) folding: the simple (S) one is the lower case, if any
    return lowered if len(lowered) == 1 else ch


def _strip_diacritics(ch):
    cp = ord(ch)
    if cp in DIACRITICS:
        return ""
    base = unicodedata.normalize(
        "NFC", "".join(c for c in unicodedata.normalize("NFD", ch) if ord(c) not in DIACRITICS))
    return base if len(base) == 1 else ch


FOLD = _FoldTable()


def fold(text):
    """Case- and diacritic-insensitive form of `text`, as MongoDB compares phrases."""
    return text.translate(FOLD)


def terms(text):
    """The folded terms of `text`, in order (MongoDB keeps a term that folds to "")."""
    return [fold(run) for run in _TERMS.findall(text)]


class Search:
    """A parsed `$search` string: positive and negated terms and phrases."""

    def __init__(self, search):
        if not isinstance(search, str):
            raise OperationFailure("$search requires a string value", code=2)
        positive, negative, self.phrases, self.negated_phrases = [], [], [], []
        in_phrase = in_negation = False
        start, pos, spaced = 0, _skip_space(search, 0), True
        while pos < len(search):
            ch = search[pos]
            if ch in '-"':
                token, end = ch, pos + 1
            else:
                end = pos
                while end < len(search) and search[end] not in ' \n\v\f\r-"':
                    end += 1
                token = search[pos:end]
            after = _skip_space(search, end)
            if token == "-":
                if not in_phrase and spaced:
                    in_negation = True
            elif token == '"':
                if in_phrase:
                    (self.negated_phrases if in_negation else self.phrases).append(
                        search[start + 1:pos])
                    in_phrase = False
                else:
                    in_phrase = True
                    in_negation = in_negation and not spaced
                    start = pos
            elif not (in_phrase and in_negation):
                in_negation = in_negation and not spaced
                (negative if in_negation else positive).append(token)
            pos, spaced = after, after > end
        self.terms = set(terms(" ".join(positive)))
        self.negated_terms = set(terms(" ".join(negative)))

    def matches(self, texts):
        """Whether a document whose text fields hold `texts` (strings) matches."""
        held = {term for text in texts for term in terms(text)}
        if not held & self.terms or held & self.negated_terms:
            return False
        folded = [fold(text) for text in texts]
        return (all(any(fold(p) in text for text in folded) for p in self.phrases)
                and not any(fold(p) in text for text in folded for p in self.negated_phrases))


def _skip_space(text, pos):
    while pos < len(text) and text[pos] in " \n\v\f\r":
        pos += 1
    return pos
