"""Message authentication of inbound mail: SPF (RFC 7208), DKIM (RFC 6376), ARC
(RFC 8617), DMARC (RFC 7489) and the Authentication-Results header (RFC 8601).

Each check is a plain blocking function over one DNS resolver (`dnslookup.py`), run in
the acceptance pipeline's worker thread (engine/accept/authcheck.py is the stage):
  spfcheck.py    SPF of the MAIL FROM domain (or the HELO name), with pyspf
  dkimcheck.py   every DKIM-Signature (each by dkimverify.py) and the ARC chain (dkimpy)
  dkimverify.py  one DKIM signature: dkimpy's pieces, RSA by cryptography (OpenSSL)
  dmarc.py       the DMARC record, the organisational domain (publicsuffixlist),
                 alignment and the policy that applies
  authresults.py the Authentication-Results header we add, and the forged ones we remove
  fcrdns.py      forward-confirmed reverse DNS, and whether the sender domain receives mail
A DNS failure is always 'temperror' and never becomes a permanent refusal. Answers are
kept for their TTL (dnscache.py), and what a check made from kept answers alone is kept as
long (dnslookup.remembered).
"""
