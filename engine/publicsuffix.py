"""The Public Suffix List (the publicsuffixlist package's copy: no network at run time),
loaded once per process at import, for DMARC's organisational domain and the URI lists'
registered domains. Loaded lazily by many threads at once it was built once per thread
(~30 ms each) on a busy server's first messages."""
from __future__ import annotations

from publicsuffixlist import PublicSuffixList

SUFFIXES = PublicSuffixList()
