"""Outbound delivery: the queue runner, MX lookup, the SMTP client, bounces, routes, DKIM."""
