"""One canonical form per email address, so one mailbox is one account.

`email-validator` (a maintained implementation of the RFCs and of IDNA/UTS-46) refuses
what a person would not type or could not see: quoted local parts, domain literals, and
unsafe characters (zero-width spaces, soft hyphens, controls); and gives the domain's ASCII
(punycode) form, so `bücher.example` and `xn--bcher-kva.example` are one domain. The local
part is compared NFKC-casefolded (full-width letters, ligatures, case).
"""
import unicodedata

from email_validator import EmailNotValidError, validate_email


def canonical_email(text):
    """The stored form of an address; ValueError (with a human message) when refused."""
    try:
        info = validate_email(text.strip(), check_deliverability=False,
                              allow_quoted_local=False, allow_domain_literal=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    local = unicodedata.normalize("NFKC", info.local_part).casefold()
    return f"{local}@{info.ascii_domain.lower()}"


def lookup_forms(text):
    """The forms under which an account for `text` may be stored: canonical, then the form
    earlier versions stored (stripped, lower-cased), for accounts registered before."""
    legacy = text.strip().lower()
    try:
        canonical = canonical_email(text)
    except ValueError:
        return [legacy]
    return [canonical] if canonical == legacy else [canonical, legacy]
