"""Who the processes of a server run as.

Started as root, the supervisor keeps root only to bind the ports and supervise; every
serving process (everything that parses client input or touches mail) becomes the
system user named by server.user, which owns the mail root. Started as any other user,
everything runs as that user.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import locks
from .errors import MailError

PR_SET_PDEATHSIG = 1
SERVING_UMASK = 0o077
USER_CREATION_LOCK = Path("/run/mailctl-useradd.lock")      # in root's own folder: no one else can hold it


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int

    def as_list(self) -> list:
        return [self.name, self.uid, self.gid]


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def serving_account(settings) -> Account | None:
    """The user serving processes become: server.user when started as root; None when
    they stay who we are (not root, or server.user is root itself)."""
    if os.geteuid() != 0:
        return None
    name = settings.server.user
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise MailError(f"server.user: there is no system user {name!r}; create it "
                        f"(useradd --system --no-create-home --shell /usr/sbin/nologin {name}) "
                        f"and give it the mail root, or set server.user in mailctl.toml") from None
    if entry.pw_uid == 0:
        return None
    return Account(name, entry.pw_uid, entry.pw_gid)


def require_owner(root, account: Account) -> None:
    """The serving processes can only work in a root their user owns."""
    owner = os.stat(root.path).st_uid
    if owner != account.uid:
        raise MailError(f"{root.path} belongs to {user_name(owner)}, but the serving processes run as "
                        f"{account.name} (server.user); give it the root: "
                        f"chown -R {account.name}: {root.path}")


def unreachable_parent(path: Path, account: Account | None = None) -> Path | None:
    """The first folder above path that account (None: a new user, who only has what
    others have) may not pass through, or None."""
    for folder in Path(path).absolute().parents:
        st = os.stat(folder)
        if account is not None and st.st_uid == account.uid:
            allowed = st.st_mode & 0o100
        elif account is not None and st.st_gid == account.gid:
            allowed = st.st_mode & 0o010
        else:
            allowed = st.st_mode & 0o001
        if not allowed:
            return folder
    return None


def require_reachable(root, account: Account) -> None:
    """The serving processes must reach the root, and Python and mailctl's code, which
    they go on importing after they became account."""
    here = Path(__file__).resolve().parent
    for path, what in ((root.path, "the mail root"), (Path(sys.executable).resolve(), "Python"),
                       (here, "mailctl's code")):
        folder = unreachable_parent(path / "x", account)
        if folder is not None:
            raise MailError(f"{folder} is closed to {account.name} (server.user), so the serving processes cannot "
                            f"reach {what} ({path}); open it (chmod o+x {folder}) or move {what}")


def become(account: Account) -> None:
    """Take account's uid and gid for good (real, effective and saved), no other groups."""
    os.setgroups([])
    os.setgid(account.gid)
    os.setuid(account.uid)
    if os.getresuid() != (account.uid,) * 3 or os.getresgid() != (account.gid,) * 3:
        raise MailError(f"could not become {account.name}")


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when its parent (the supervisor) dies, then check that the
    parent is still the one expected: it may have died before the request was made.
    Called after the last change of uid, which clears the request."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    if os.getppid() != parent:
        os._exit(0)


def give(path: str | os.PathLike, account: Account | None) -> None:
    """A file the supervisor (root) made for the serving processes becomes theirs."""
    if account is not None:
        os.lchown(path, account.uid, account.gid)


# -- setting up a root ------------------------------------------------------------------

def ensure_system_user(name: str) -> Account:
    """The system user, created (no home, no login shell) when it does not exist."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        # Two useradds at once can both succeed, the second rewriting the first's ids:
        # mailctl processes (two inits, two first starts) make users one at a time.
        one_at_a_time = locks.FileLock(USER_CREATION_LOCK) if os.geteuid() == 0 else contextlib.nullcontext()
        with one_at_a_time:
            try:
                entry = pwd.getpwnam(name)          # made meanwhile by another mailctl
            except KeyError:
                entry = _create_system_user(name)
    return Account(name, entry.pw_uid, entry.pw_gid)


def _create_system_user(name: str) -> pwd.struct_passwd:
    if shutil.which("useradd"):
        cmd = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
               "--shell", "/usr/sbin/nologin", name]
    else:
        cmd = ["adduser", "--system", "--group", "--no-create-home", "--shell", "/usr/sbin/nologin", name]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        problem = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise MailError(f"cannot create the system user {name!r}: {problem}") from None
    return pwd.getpwnam(name)


def give_root(path: Path, account: Account) -> None:
    """Every file and folder of the root to account, readable by it alone (0600/0700).
    Links are not followed."""
    for here, dirs, files in os.walk(path):
        for name in [*dirs, *files, None]:
            item = os.path.join(here, name) if name else here
            os.lchown(item, account.uid, account.gid)
            mode = os.lstat(item).st_mode
            if not os.path.islink(item):
                os.chmod(item, mode & 0o7700)


def act_as_root_owner(path: str | os.PathLike) -> None:
    """root running a command on a root another user owns becomes that user, so every
    file the command makes belongs to the server (and is private to it)."""
    if os.geteuid() != 0:
        return
    try:
        owner = os.stat(path).st_uid
    except OSError:
        return
    if owner == 0:
        return
    try:
        gid = pwd.getpwuid(owner).pw_gid
    except KeyError:
        gid = os.stat(path).st_gid
    become(Account(user_name(owner), owner, gid))
    os.umask(SERVING_UMASK)
