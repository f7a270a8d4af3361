"""Generated files stay in step with the code."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from engine import settings as settings_mod
from engine.tomlsyntax import tomllib

TOP = Path(__file__).resolve().parent.parent


def test_man_pages_and_completions_are_current():
    r = subprocess.run([sys.executable, str(TOP / "scripts" / "gen_docs.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_sample_config_documents_every_key_with_its_default():
    text = (TOP / "sample-config.toml").read_text()
    assert text == settings_mod.render_sample(), "run: python -c \"from engine import settings; " \
        "open('sample-config.toml','w').write(settings.render_sample())\""
    import re
    setting = re.compile(r"# [a-z_0-9]+ = ")
    uncommented = "\n".join(line[2:] if setting.match(line) else line for line in text.splitlines())
    data = tomllib.loads(uncommented)
    assert settings_mod.validate(data, uncommented, "sample")[1] == []
    assert settings_mod.as_dict(settings_mod.validate(data, uncommented, "sample")[0]) == \
        settings_mod.as_dict(settings_mod.validate({}, "", "x")[0])
