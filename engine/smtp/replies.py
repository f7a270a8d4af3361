"""Every reply our SMTP server sends, in one table: code, RFC 3463 enhanced status, text.

The words and casing are hMailServer's where its manual lists the reply
(feature-inventory §1.8, typos kept: "Reciprient"), else Postfix's or aiosmtpd's; tests
compare them byte for byte, so a text changes here or nowhere. A reply that carries a
value (a size, a queue id, a host name) is a function.

A `Reply` is the reply line itself (a str: it goes to aiosmtpd and to the client as it
is) that also knows its parts (.code, .status, .text). A `Rejection` is a reply that
refuses (4xx or 5xx): what the directory, the relay policy and delivery decide about a
recipient is one, kept with the recipient for the log and its DSN.
"""
from __future__ import annotations

import base64

from ..overload import TRY_LATER


class Reply(str):
    """'250 2.0.0 Ok', with .code 250, .status '2.0.0' and .text 'Ok'."""

    code: int
    status: str
    text: str

    def __new__(cls, code: int, status: str, text: str):
        self = super().__new__(cls, f"{code} {status} {text}")
        self.code, self.status, self.text = code, status, text
        return self

    def __getnewargs__(self):          # copy and pickle build it from its parts, as __new__ wants
        return self.code, self.status, self.text


class Rejection(Reply):
    """A reply that refuses: 4xx (try again later) or 5xx (never)."""


# -- the connection: admission, limits, timeout, stop ------------------------------------

SHUTTING_DOWN = Rejection(421, "4.3.2", "Service shutting down, try again later")
OUT_OF_RESOURCES = Rejection(421, "4.3.2", TRY_LATER)       # out of file descriptors (overload.py)
BANNED = Rejection(421, "4.7.0", "Too many failed logins from your address, try again later")
TOO_MANY_CONNECTIONS = Rejection(421, "4.7.0", "Too many connections, try again later")
TOO_MANY_CONNECTIONS_FROM_IP = Rejection(421, "4.7.0", "Too many connections from your address, try again later")
PREGREET = Rejection(554, "5.5.1", "Protocol error")       # talked before the greeting on port 25
ACCESS_DENIED = Rejection(554, "5.7.1", "Connections from your address are not accepted")    # access lists
TOO_MANY_INVALID = Rejection(421, "4.7.0", "Too Many Invalid Commands, Closing Connection")
TLS_HANDSHAKE_FAILED = Rejection(421, "4.7.0", "TLS handshake failed")
LOCAL_ERROR_CLOSING = Rejection(421, "4.3.0", "Local Error In Processing, Closing Connection")
INSUFFICIENT_STORAGE = Rejection(452, "4.3.1", "Insufficient system storage")   # a full or read-only disk


def timeout(hostname: str) -> Rejection:
    """No command within the idle time (RFC 5321 §4.5.3.2: say so before closing)."""
    return Rejection(421, "4.4.2", f"{hostname} Error: timeout exceeded")


# Replies counted toward limits.max_invalid_commands: syntax and sequence errors, and an
# unknown mailbox (someone guessing addresses).
INVALID_CODES = ("500", "501", "502", "503", "504")
UNKNOWN_MAILBOX = "550 5.1.1"


# -- greeting, EHLO/HELO, RSET, commands we refuse ----------------------------------------

OK = Reply(250, "2.0.0", "Ok")
BYE = Reply(221, "2.0.0", "Bye")
READY_FOR_TLS = Reply(220, "2.0.0", "Ready to start TLS")
TLS_NOT_AVAILABLE = Rejection(454, "4.7.0", "TLS not available")
EHLO_INVALID = Rejection(501, "5.5.4", "EHLO Invalid Domain Address")
HELO_INVALID = Rejection(501, "5.5.4", "HELO Invalid Domain Address")
RSET_SYNTAX = Rejection(501, "5.5.4", "Syntax: RSET")
MAIL_SYNTAX = Rejection(501, "5.5.4", "Syntax: MAIL FROM: <address> [SIZE=<ASCII digits>]")
VRFY_DISALLOWED = Rejection(502, "5.5.1", "VRFY Disallowed")
EXPN_DISALLOWED = Rejection(502, "5.5.1", "EXPN Disallowed")
TURN_DISALLOWED = Rejection(502, "5.5.1", "Turn Disallowed")
HELO_FIRST = Rejection(503, "5.5.1", "Use HELO/EHLO First")
SENDER_FIRST = Rejection(503, "5.5.1", "Must Have Sender First")
RECIPIENT_FIRST = Rejection(503, "5.5.1", "Must Have Sender And Recipient First")
RESET_FIRST = Rejection(503, "5.5.1", "Issue A Reset If You Want To Start Over")
ALREADY_AUTHENTICATED = Rejection(503, "5.5.1", "Already Authenticated")
LINE_TOO_LONG = Rejection(500, "5.5.2", "Line Too Long")
UNIMPLEMENTED = Rejection(502, "5.5.2", "Unimplemented Command")
SYNTAX_ERROR = Rejection(500, "5.5.2", "Syntax Error")
NON_ASCII_COMMAND = Rejection(500, "5.5.2", "Syntax Error: non-ASCII command")
TOO_BIG = Rejection(552, "5.3.4", "Message Size Exceeds Fixed Maximum Message Size")


def hello(hostname: str) -> str:
    """HELO's answer: our name, no enhanced status (RFC 2034 §3: not before EHLO)."""
    return f"250 {hostname}"


def ehlo(lines: list[str]) -> str:
    """EHLO's answer, our name then the extensions: one string, so one write."""
    return "\r\n".join(f"250-{line}" for line in lines[:-1]) + f"\r\n250 {lines[-1]}"


# -- AUTH -----------------------------------------------------------------------------------

AUTH_NOT_OFFERED = Rejection(502, "5.5.1", "AUTH not offered on this port; use submission (587 or 465)")
AUTH_IN_TRANSACTION = Rejection(503, "5.5.1", "AUTH not allowed during a mail transaction")
AUTH_LINE_TOO_LONG = Rejection(500, "5.5.6", "Authentication Exchange line is too long")
AUTH_METHOD_UNSUPPORTED = Rejection(504, "5.5.4", "Authentication Method Not Supported")
AUTH_TYPE_MISSING = Rejection(504, "5.5.4", "Authentication Type Not Supported")
CANNOT_DECODE = Rejection(501, "5.5.2", "Cannot decode response")
AUTH_FAILED = Rejection(535, "5.7.8", "Authentication Failed. Restarting Authentication Process.")
AUTH_OK = Reply(235, "2.7.0", "Authentication Successful")


def challenge(prompt: str) -> str:
    """An AUTH challenge: 334 and the prompt in base64 ('' for PLAIN's empty one)."""
    return "334 " + base64.b64encode(prompt.encode()).decode()


# -- the directory's and the relay policy's verdicts on an address (RCPT, delivery) ------

UNKNOWN_USER = Rejection(550, "5.1.1", "Unknown User")
ACCOUNT_INACTIVE = Rejection(550, "5.2.1", "Account Is Not Active")
ALIAS_INACTIVE = Rejection(550, "5.2.1", "Alias Is Not Active")
LIST_INACTIVE = Rejection(550, "5.2.1", "Distribution List Not Active")
DOMAIN_DISABLED = Rejection(550, "5.2.1", "Domain Has Been Disabled")
TOO_MANY_FORWARDS = Rejection(550, "5.4.6", "Mail Server Configuration Error. Too Many Recursive Forwards")
LIST_NOT_AUTHORIZED = Rejection(550, "5.7.1", "Not authorized")
LIST_AUTH_REQUIRED = Rejection(550, "5.7.1", "This list accepts mail only from authenticated senders")
BAD_ADDRESS = Rejection(501, "5.1.3", "A Valid Address Is Required")
RELAY_DENIED = Rejection(550, "5.7.1", "Delivery Is Not Allowed To This Address")
IP_LITERAL = Rejection(550, "5.7.1", "Not Accepting Mail For IP Address Literals")
ROUTE_REFUSED = Rejection(550, "5.1.1", "Reciprient Not In Route List")     # hMailServer's text, typo included
SRS_INVALID = Rejection(550, "5.1.1", "Invalid Or Expired SRS Address")   # engine/srs_forward.py
AUTH_REQUIRED = Rejection(530, "5.7.0", "SMTP Authentication Is Required")
SENDER_BLOCKED = Rejection(550, "5.7.1", "Sender Address Rejected: Access Denied")      # access.block_senders
RECIPIENT_BLOCKED = Rejection(550, "5.7.1", "Recipient Address Rejected: Access Denied")    # access.block_recipients
SENDER_NOT_OWNED = Rejection(550, "5.7.1", "Sender Address Not Owned By Authenticated User")
SENDER_NOT_LOCAL = Rejection(550, "5.7.1", "Sender Address Must Be A Local Account")
SENDER_INVALID = Rejection(550, "5.1.7", "The Address Is Not Valid")
TOO_MANY_RECIPIENTS = Rejection(452, "4.5.3", "Too Many Recipients")
OVER_QUOTA_TEMP = Rejection(452, "4.2.2", "Mailbox Full")
OVER_QUOTA_PERM = Rejection(552, "5.2.2", "Mailbox Full")


# -- aiosmtpd's own replies, and ours in their place (the adapter rewrites by prefix) ----

AIOSMTPD = [
    ("503 Error: send HELO first", HELO_FIRST),
    ("503 Error: send EHLO first", HELO_FIRST),
    ("503 Error: need MAIL command", SENDER_FIRST),
    ("503 Error: need RCPT command", RECIPIENT_FIRST),
    ("503 Error: nested MAIL command", RESET_FIRST),
    ("503 Already authenticated", ALREADY_AUTHENTICATED),
    ("500 Command line too long", LINE_TOO_LONG),
    ("500 Error: command ", UNIMPLEMENTED),
    ("500 Error: bad syntax", SYNTAX_ERROR),
    ("500 Error: strict ASCII mode", NON_ASCII_COMMAND),
    ("552 Error: message size exceeds", TOO_BIG),
    ("553 5.1.3 Error: malformed address", BAD_ADDRESS),
    ("504 5.5.4 Unrecognized authentication type", AUTH_METHOD_UNSUPPORTED),
    ("501 Not enough value", AUTH_TYPE_MISSING),
    ("250 OK", OK),
    ("221 Bye", BYE),
    ("220 Ready to start TLS", READY_FOR_TLS),
    ("454 TLS not available", TLS_NOT_AVAILABLE),
    ("502 5.5.1 Too many unrecognized commands", TOO_MANY_INVALID),
]


# -- MAIL, RCPT, DATA and after -------------------------------------------------------------
# (the transaction's own replies; the acceptance pipeline's go here too)

SENDER_OK = Reply(250, "2.1.0", "Ok")
RECIPIENT_OK = Reply(250, "2.1.5", "Ok")
TOO_MANY_MESSAGES = Rejection(450, "4.7.1", "Too Many Messages From Your Address, Try Again Later")
DATA_SYNTAX = Rejection(501, "5.5.4", "Syntax: DATA")
START_DATA = "354 End data with <CR><LF>.<CR><LF>"
BARE_LF = Rejection(554, "5.6.0", "Rejected - Message Using Bare LF's (lines must end with CR LF)")
BARE_CR = Rejection(554, "5.6.0", "Rejected - Message Using Bare CR's (lines must end with CR LF)")
HEADER_FROM_NOT_OWNED = Rejection(550, "5.7.1", "Header From Address Not Owned By Authenticated User")
LOCAL_ERROR = Rejection(451, "4.3.0", "Local Error In Processing, Try Again Later")
GREYLISTED = Rejection(451, "4.7.1", "Please Try Again Later")   # greylisting (hMailServer's text)


def too_big(size: int, limit: int) -> Rejection:
    """A message (or its declared SIZE) over the limit, both in KB (hMailServer's text)."""
    return Rejection(552, "5.3.4", f"{TOO_BIG.text}. Size: {size // 1024} KB, Max size: {limit // 1024} KB")


def send_limit(account: str, limit: str) -> Rejection:
    """An account past one of its outbound limits (accept/sendlimits.py): limit is
    'sending limit of 100 messages per hour'."""
    return Rejection(451, "4.7.1", f"{account}: {limit} reached, try again later")


def send_blocked(account: str, why: str) -> Rejection:
    """An account blocked after a daily outbound limit, until the administrator unblocks it."""
    return Rejection(451, "4.7.1", f"{account}: sending to external recipients blocked ({why} reached); "
                                   f"try again later or ask your administrator")


def queued(queue_id: str) -> Reply:
    """The end of DATA: every copy is durable."""
    return Reply(250, "2.0.0", f"Ok: queued as {queue_id}")


# -- message authentication (accept/authcheck.py); the names come shown safe, by the caller --

def spf_refused(domain: str, reason: str) -> Rejection:
    """SPF fail with mailauth.spf_fail = "reject" (RFC 7372: 5.7.23)."""
    return Rejection(550, "5.7.23", f"SPF of {domain} does not allow this server ({reason})")


def dmarc_refused(domain: str) -> Rejection:
    return Rejection(550, "5.7.1", f"Rejected by the DMARC policy of {domain}: the message is not "
                                   f"authenticated by it (SPF and DKIM not aligned)")


def dmarc_temperror(domain: str) -> Rejection:
    """DMARC could not be decided for a DNS failure: never a 5xx."""
    return Rejection(451, "4.4.3", f"Temporary DNS failure authenticating mail from {domain}; try again later")


# -- HELO and sender checks set to 'reject' (accept/helochecks.py); the problem quotes no raw
#    client text, the domain and address come normalised --

def spam_refused(score: float, limit: float) -> Rejection:
    """The spam score at or over the reject threshold (engine/accept/spamscore.py)."""
    return Rejection(550, "5.7.1", f"Message refused as spam (score {score}, limit {limit})")


def client_check_refused(problem: str) -> Rejection:
    """A HELO, forged-HELO or reverse-DNS check: the problem says what was found."""
    return Rejection(550, "5.7.1", f"Rejected: {problem}")


def sender_domain_refused(domain: str, null_mx: bool) -> Rejection:
    """hMailServer's MX check; a null MX is RFC 7505's 5.7.27."""
    if null_mx:
        return Rejection(550, "5.7.27", f"Sender domain {domain} accepts no mail (null MX, RFC 7505)")
    return Rejection(550, "5.7.1", f"Sender Domain Does Not Have Any MX Records ({domain} has neither MX "
                                   f"nor A/AAAA, so it cannot receive replies)")


# -- virus scanning (accept/antivirus.py); the virus's name comes checked (scan/verdict.py) --
SCANNER_UNAVAILABLE = Rejection(451, "4.7.1", "Virus scanner unavailable, try again later")
TOO_BIG_TO_SCAN = Rejection(552, "5.3.4", "Message too large to be scanned for viruses")


SPAM_SCANNER_UNAVAILABLE = Rejection(451, "4.7.1", "Spam scanner unavailable, try again later")


def spam_tagged(engine: str) -> Rejection:
    """A spam scanner's own verdict refuses it (hMailServer's text for SpamAssassin)."""
    return Rejection(554, "5.7.1", f"Tagged As SPAM By {engine}")


def virus_found(name: str) -> Rejection:
    return Rejection(554, "5.7.1", f"Rejected: message contains a virus ({name})")


# -- attachment blocking (accept/attachments.py); the name comes shown (scan/strip.py shown_name) --
TOO_MANY_PARTS = Rejection(554, "5.7.1", "Rejected: too many MIME parts to examine the attachments")


def attachment_blocked(name: str) -> Rejection:
    return Rejection(554, "5.7.1", f"Rejected: attachment {name} is not accepted here")


def sieve_rejected(reason: str) -> Rejection:
    """The recipient's Sieve script refused the message (RFC 5429 reject/ereject)."""
    text = " ".join(reason.split())[:200] or "Rejected by the recipient's filter"
    return Rejection(550, "5.7.1", text)
