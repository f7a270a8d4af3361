"""Sieve (RFC 5228) mail filtering: a strict parser, an interpreter with runtime limits,
the per-account script store (Pigeonhole's layout); the acceptance-pipeline stage that runs them is engine/accept/sieving.py (this
package never imports accept: accept imports it)."""
