"""Sieve (RFC 5228) mail filtering: a strict parser, an interpreter with runtime limits,
the per-account script store (Pigeonhole's layout) and the acceptance-pipeline stage."""
