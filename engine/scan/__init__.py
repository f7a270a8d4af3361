"""Virus scanners the acceptance pipeline talks to (engine/accept/antivirus.py): clamd over
its socket (`clamd.py`), an external command (`command.py`), and removing an infected MIME
part while keeping the rest of the message as it was (`strip.py`). `settings.py` holds
mailctl.toml's [antivirus] section. Attachment blocking's verdicts (`attachments.py`:
names, zip name lists, MIME types) and its [attachments] section (`attachment_settings.py`)
live here too: they replace parts the same way."""
