"""The two rooms of SMTP: the adapter over aiosmtpd (engine/smtp/adapter.py) and our
session over it (engine/smtp/server.py)."""
from __future__ import annotations

import inspect

from aiosmtpd.smtp import SMTP

from engine.smtp.adapter import SMTPAdapter
from engine.smtp.server import MailSMTP


def test_the_session_overrides_no_internal_of_aiosmtpd():
    """Overriding an underscored name of aiosmtpd is the adapter's job, in one place."""
    internals = {name for name in vars(SMTP) if name.startswith("_") and not name.startswith("__")}
    assert not internals & set(vars(MailSMTP))
    assert {"_handle_client", "_reset_timeout", "_timeout_cb", "_getaddr"} <= internals & set(vars(SMTPAdapter))


def test_the_session_implements_every_hook_the_adapter_leaves_to_it():
    left = [name for name, f in vars(SMTPAdapter).items()
            if inspect.isfunction(f) and "raise NotImplementedError" in inspect.getsource(f)]
    assert set(left) >= {"on_mail", "on_rcpt", "max_invalid_commands"}
    for name in left:
        assert name in vars(MailSMTP), name
