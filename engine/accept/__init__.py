"""The acceptance pipeline: from "a message arrived" to "stored or queued", for every way
in (SMTP, the pickup folder, sendmail(1), mailctl send). pipeline.py lists the stages in
order and says where a new one goes; verdicts.py is what a stage answers; arrival.py is
what it sees."""
from .arrival import PICKUP, SEND, SENDMAIL, SMTP, SUBMISSION, Arrival, Envelope
from .pipeline import RCPT_STAGES, STAGES, Pipeline
from .rcpt import RcptCheck
from .verdicts import CONTINUE, AddHeaders, Continue, Defer, Discard, FileInto, Reject, Score, Verdict, refusal

__all__ = ["PICKUP", "SEND", "SENDMAIL", "SMTP", "SUBMISSION", "Arrival", "Envelope", "RCPT_STAGES", "STAGES",
           "Pipeline", "RcptCheck", "CONTINUE", "AddHeaders", "Continue", "Defer", "Discard", "FileInto",
           "Reject", "Score", "Verdict", "refusal"]
