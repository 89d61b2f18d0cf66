"""Reviewing a campaign's takes: the review page, and approve / reject decisions kept beside the manifest.

Modules: ``decisions`` (the committed decisions file and its lock), ``judging``
(decisions bound to the state's takes; what the next run redoes), ``grid`` (what
the page shows), ``thumbnails`` (posters, durations), ``page`` (the HTML),
``server`` (``--serve``). ``lipbatch/commands/review.py`` is the command.
"""

from __future__ import annotations

from lipbatch.review.judging import rejected_takes

__all__ = ["rejected_takes"]
