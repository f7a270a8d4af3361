"""Access lists: who may connect to which listener, which senders and recipients are
refused, and hMailServer's IP-range model (what a client's range may deliver, whether
spam and virus checks run for it). See patterns.py, entries.py, ranges.py, gate.py,
origin.py; the settings of [access] are access_settings.py."""
