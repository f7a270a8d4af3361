"""Queue administration behind `mailctl queue`: filters, statistics (like qshape),
bouncing on demand, and a flush that works with or without a running server."""
from __future__ import annotations

import asyncio
import re
import time

from ..errors import InvalidInput
from ..queue import Envelope, Queue

AGE_BUCKETS = (5, 10, 20, 40, 80, 160, 320, 640, 1280)   # minutes, as qshape's default
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    m = _DURATION.match(text or "")
    if not m:
        raise InvalidInput(f"{text!r} is not a duration; use a number with s, m, h, d or w (like 30m, 2h, 3d)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def matches(env: Envelope, *, sender: str | None = None, to: str | None = None, domain: str | None = None,
            state: str | None = None, older_than: float | None = None, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    if state and env.state != state:
        return False
    if sender is not None and sender.lower() not in env.sender.lower():
        return False
    pending = [r for r in env.recipients if not r.done]
    if to is not None and not any(to.lower() in r.address.lower() for r in pending):
        return False
    if domain is not None and not any(r.domain == domain.lower().rstrip(".") for r in pending):
        return False
    if older_than is not None and now - env.created < older_than:
        return False
    return True


def public(env: Envelope, now: float | None = None) -> dict:
    """An envelope as shown by list/show --json (stable keys)."""
    now = time.time() if now is None else now
    return {"id": env.id, "state": env.state, "sender": env.sender, "size": env.size,
            "created": env.created, "age_seconds": round(now - env.created, 1),
            "attempts": env.attempts, "next_attempt": env.next_attempt,
            "last_attempt": env.last_attempt or None, "last_code": env.last_code,
            "last_error": env.last_error, "delay_notified": env.delay_notified, "source": env.source,
            "recipients": [{"address": r.address, "status": r.status, "code": r.code, "reply": r.reply,
                            "remote": r.remote} for r in env.recipients]}


def stats(envelopes: list[Envelope], now: float | None = None) -> dict:
    """Counts by state, and pending recipients by destination domain and age (qshape)."""
    now = time.time() if now is None else now
    labels = [f"{b}m" for b in AGE_BUCKETS] + [f"{AGE_BUCKETS[-1]}m+"]
    by_state = {"active": 0, "deferred": 0, "hold": 0}
    domains: dict[str, dict] = {}
    total = {"total": 0, **{lbl: 0 for lbl in labels}}
    for env in envelopes:
        by_state[env.state] = by_state.get(env.state, 0) + 1
        age_min = (now - env.created) / 60
        label = next((f"{b}m" for b in AGE_BUCKETS if age_min < b), labels[-1])
        for r in env.recipients:
            if r.done:
                continue
            row = domains.setdefault(r.domain, {"total": 0, **{lbl: 0 for lbl in labels}})
            row["total"] += 1
            row[label] += 1
            total["total"] += 1
            total[label] += 1
    ordered = dict(sorted(domains.items(), key=lambda kv: (-kv[1]["total"], kv[0])))
    return {"messages": len(envelopes), "states": by_state, "age_buckets": labels,
            "total": total, "domains": ordered}


def bounce_now(runtime, qid: str, reason: str = "5.0.0 bounced by the administrator") -> Envelope:
    """Fail every pending recipient of qid now and send the DSN (mailctl queue bounce)."""
    from .runner import Runner
    queue = Queue(runtime.root)
    failed: list = []

    def change(env):
        for r in env.recipients:
            if not r.done:
                r.status, r.code, r.dsn = "failed", 0, reason.split()[0]
                r.reply = f"{reason}" + (f" (last reply: {r.reply})" if r.reply else "")
                failed.append(r)
    env = queue.edit(qid, change, "hold")
    data = b""
    try:
        data = queue.body_path(qid).read_bytes()
    except FileNotFoundError:
        pass
    if failed:
        Runner(runtime).notify(env, failed, "failed", data)
    queue.remove(env)
    return env


def flush(root, runtime_factory=None) -> str:
    """Try every deferred item now. With a running server it is told (and does the
    work); otherwise the delivery runs here, in the foreground. Returns which."""
    from ..pickup import pending_queue_ids
    from .runner import Runner
    from .wakeup import notify_server
    queue = Queue(root)
    queue.request_flush()
    if notify_server(root):
        return "server"
    from ..runtime import Runtime
    runtime = (runtime_factory or Runtime.load)(root)
    try:
        async def go():
            runner = Runner(runtime, keep_bodies=pending_queue_ids)
            await runner.start()
            queue.take_flush_request()
            await runner.run_once(force=True)
            await runner.pool.prune(everything=True)
            return runner
        asyncio.run(go())
    finally:
        runtime.close()
    return "here"
