"""The shared state backend: one campaign's records in a PostgreSQL schema, for many workers.

``lipbatch run --state postgresql://host/db`` (or ``LIPBATCH_STATE_URL``) keeps the
state in the schema ``lipbatch_<campaign>`` (the campaign is named after the state
file, e.g. ``spring`` for ``spring.yaml``, ``spring_sandbox`` for its rehearsal, or
``?campaign=NAME`` in the URL), created on first use and migrated by version.
Any number of ``lipbatch run`` processes on any number of machines may share it.

Modules: ``url`` (the address; passwords refused), ``session`` (a connection that
survives a restart), ``schema`` (tables and migrations), ``store`` (the records:
``PostgresState``), ``leases`` (claims on jobs, slots and uploads, with heartbeat),
``view`` (read-only: status, plan), ``transfer`` (push/pull to the local files).

Readings where the issue left room:

- A campaign belongs to one manifest file name; a second manifest naming the same
  campaign is refused rather than mixed in.
- Each worker still writes its outputs to its own output folder (a shared folder on
  one machine or a network file system is the usual set-up). A worker finishing a
  job another worker made checks its own folder: a missing output is downloaded
  again from the provider (never paid again).
- Times are real seconds, not scaled by a sandbox's ``time_scale``: a lease
  (``LIPBATCH_STATE_LEASE``, default 60 s) is renewed every quarter lease; a worker
  that cannot reach the database retries for half a lease, then stops with a clear
  message (a rerun resumes).
"""

from __future__ import annotations

from lipbatch.state.postgres.leases import DEFAULT_LEASE, LEASE_VARIABLE, Leases, lease_seconds
from lipbatch.state.postgres.store import PostgresState
from lipbatch.state.postgres.transfer import pull, push, same_records
from lipbatch.state.postgres.url import Target, parse_url, schema_name
from lipbatch.state.postgres.view import read_campaign

__all__ = ["DEFAULT_LEASE", "LEASE_VARIABLE", "Leases", "PostgresState", "Target", "lease_seconds", "parse_url",
           "pull", "push", "read_campaign", "same_records", "schema_name"]
