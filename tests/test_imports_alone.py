"""Every module of engine/ and mailctl/ imports on its own, as the first of the project's
modules a process loads. An import circle through a package's __init__ (settings ->
accept -> pipeline -> ... -> settings) passes whenever something else happened to be
imported first, and breaks the one command or worker that starts with that module."""
import subprocess
import sys
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent

# One child process imports every module in turn, each time after forgetting every one
# of ours it loaded (third-party modules stay: they are not what can form our circles).
CHILD = r"""
import importlib, sys
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m.split(".")[0] in ("engine", "mailctl")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as e:
        failed.append(f"{name}: {type(e).__name__}: {e}")
print("\n".join(failed))
"""


def modules() -> list[str]:
    names = []
    for top in ("engine", "mailctl"):
        for path in sorted((TOP / top).rglob("*.py")):
            parts = list(path.relative_to(TOP).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            if parts[-1] != "__main__":
                names.append(".".join(parts))
    return names


def test_every_module_imports_first():
    names = modules()
    assert "engine.settings" in names and "engine.accept.pipeline" in names
    r = subprocess.run([sys.executable, "-c", CHILD, *names], cwd=TOP, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == ""
