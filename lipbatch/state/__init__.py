"""Crash-safe, resumable run state: what was paid for, what is in flight, what is done.

Money is spent between "POST sent" and "task id recorded", so every change is
written to an append-only journal and fsync'd before ``update`` returns; a
kill -9 at any instant leaves a state that replays to the last acknowledged
change. Files, for a state path ``S``:

``S``
    The snapshot: ``{"format": 2, "seq": N, "journal_head": true, "uploads": [...], "takes": [...], "jobs": [...]}``,
    one record per line. Written only atomically (temp file in the same folder,
    fsync, ``os.replace``, fsync of the folder).
``S.backup``
    A second copy of the snapshot, written right after it at every compaction,
    so a deleted or garbled snapshot loses nothing (``lipbatch state repair``).
    A new state gets its journal, then its first snapshot and backup, when it is
    first opened: from then on every file has a witness.
``S.journal``
    A head line, then JSON lines, one event each, carrying ``"format"`` and a sequence number:
    ``{"format":2,"seq":N,"op":"job","key":K,"set":{field: value}}``,
    ``{"format":2,"seq":N,"op":"upload","endpoint":E,"account":A,"sha256":H,"handle":X,"expires_at":T}``
    (an empty handle forgets the upload) or ``{"format":2,"seq":N,"op":"take",...}`` (a superseded take).
    The head, ``{"format":2,"op":"head","base":B,"acked":A}`` padded to a fixed width, says which
    snapshot event the journal continues (B) and the last event whose ``update`` returned (A). It is
    rewritten in place with every event, under that event's fsync (no extra fsync).
``S.lock``
    ``{"pid", "host", "started"}`` of the process that has the state open.

Replay = snapshot + journal lines whose ``seq`` is above the snapshot's. The
sequence numbers make a crash between "snapshot replaced" and "journal
truncated" harmless (the old lines are skipped).

Damage is detected, never guessed (``StateDamagedError``, exit 2, until
``lipbatch state repair``): a kill -9 at any instant leaves at most the last
line torn or missing, so anything more is damage: a journal ending two or more
events before its head's mark (cut), a snapshot missing while its backup or a
journal continuing a later event exists (deleted), a snapshot older than its
backup or than the journal's base (replaced by an older copy), a journal
missing or headless beside a snapshot that expects one, a corrupt line with
lines after it. Files an older lipbatch wrote (no head, no backup) load as
before and get a head at the first open.

Format 2 (the campaign lifecycle) adds where each record was made: a job's
``endpoint`` and ``take``, an upload's ``endpoint``, and the superseded takes.
A task id or upload handle is only used against the endpoint that issued it
(``JobRecord.made_by``). Format-1 files keep loading: their records carry no
endpoint and are adopted by the endpoint that runs them next, except when the
file is a rehearsal's (a result URL on loopback): then every record of it is
marked ``LEGACY_SANDBOX`` and counts for no real provider. The next compaction
writes format 2.

Decisions where the contract left room:

* A line counts only when it ends with a newline: a last line without one is a
  write the crash interrupted, so it is ignored even if it happens to parse.
  The last complete line is also ignored when it does not decode (file systems
  may leave zeros after a crash); any other undecodable line, an unknown field,
  op or status, or a newer format is a ``LipbatchError`` naming file and line.
* ``update`` that changes nothing writes nothing (a rerun of a finished
  manifest leaves the files untouched); ``updated_at`` is stamped with the
  current time unless given.
* The journal is compacted on close and whenever it holds more than
  ``max(compact_every, number of records)`` events, so compaction costs stay
  proportional to the work done however large the state is. The backup rides
  on compaction (one more file write and fsync each time, none per update).
* ``upload`` treats a record expiring within ``UPLOAD_EXPIRY_MARGIN`` seconds
  as expired: a handle about to vanish is not worth a failed submission.
  Expired uploads are dropped at compaction.
* Lock: see ``lock.py``.
* ``redact``: values given to ``State.open`` (credentials) are replaced by
  ``[redacted]`` in any string field before it is stored, in case a provider
  echoes a secret back in an error message, also encoded or cut (``redact.Redactor``).

Modules: ``records`` (what is stored), ``replay`` (reading, damage checks), ``lock``,
``durable`` (fsync'd writes), ``local`` (the writer of the local backend),
``repair`` (rebuilding a damaged state from every copy of it),
``backend`` (the interface both backends offer, and the choice between them),
``postgres`` (the shared backend: one campaign's records in PostgreSQL, for many workers).
"""

from __future__ import annotations

from lipbatch.state.durable import atomic_write_bytes, fsync_directory
from lipbatch.state.local import REDACTED, State
from lipbatch.state.lock import lock_path
from lipbatch.state.records import (
    LEGACY_SANDBOX,
    NOT_CREATED,
    OUTPUT_LOST,
    REFUSED,
    STATE_FORMAT,
    UPLOAD_EXPIRY_MARGIN,
    JobRecord,
    JobStatus,
    TakeRecord,
    UploadRecord,
)
from lipbatch.state.replay import Loaded, StateDamagedError, backup_path, journal_path, read_jobs, read_state

__all__ = [
    "LEGACY_SANDBOX", "NOT_CREATED", "OUTPUT_LOST", "REDACTED", "REFUSED", "STATE_FORMAT", "UPLOAD_EXPIRY_MARGIN",
    "JobRecord", "JobStatus", "Loaded", "State", "StateDamagedError", "TakeRecord", "UploadRecord",
    "atomic_write_bytes", "backup_path", "fsync_directory", "journal_path", "lock_path", "read_jobs", "read_state",
]
