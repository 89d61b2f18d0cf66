"""The child of ``lipbatch.verifier``: one answer line per path read on stdin, until stdin closes.

Kept apart from ``lipbatch.verifier`` so the child imports PyAV and the standard library only
(not trio, which was two thirds of its start-up). It ignores SIGINT (the parent handles Ctrl-C
and closes the pipe) and exits when its parent is gone, also while a file keeps it busy.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
import time

from lipbatch.media import MediaError, verify_playable

_PARENT_CHECK = 1.0  # seconds between checks that the parent still runs
READY = b'{"ready": true}'  # the first line: the child can read requests now


def _exit_with_parent(parent: int) -> None:
    while True:
        time.sleep(_PARENT_CHECK)
        if os.getppid() != parent:  # re-parented: nobody will read an answer
            os._exit(1)


def answer(line: str) -> dict[str, object]:
    """The answer to one request line."""
    try:
        path = json.loads(line)["path"]
        return {"ok": True, "info": dataclasses.asdict(verify_playable(path))}
    except MediaError as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - any other failure is this file's answer, not the child's end
        return {"ok": False, "error": f"cannot check this file ({type(exc).__name__}: {exc})"}


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    sys.stdout.write(READY.decode() + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        sys.stdout.write(json.dumps(answer(line)) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
