"""The supervisor of `tokengate serve --workers N`: uvicorn's, adjusted for draining.

Each worker drains on its own (gateway.drain) once the supervisor passes SIGTERM on. Two
things the supervisor must do for that to hold:

- Close its own copy of the listening socket once it has passed SIGTERM on. The socket
  listens as long as any process holds it; kept open here, it would queue connections that
  no worker accepts any more once the workers have closed theirs (clients hang instead of
  being refused and retrying elsewhere).
- Keep handling signals while it waits for the workers: a second SIGTERM, or SIGINT, is
  passed on to them, which skips what is left of their delay.
"""

from __future__ import annotations

import os
import signal

from uvicorn.supervisors.multiprocess import Multiprocess

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Supervisor(Multiprocess):
    def terminate_all(self) -> None:
        super().terminate_all()
        for sock in self.sockets:
            sock.close()

    def join_all(self) -> None:
        for process in self.processes:
            while process.exitcode is None:
                process.process.join(0.1)
                self._pass_on_stop_signals()

    def _pass_on_stop_signals(self) -> None:
        for sig in tuple(self.signal_queue):
            self.signal_queue.remove(sig)
            if sig not in _STOP_SIGNALS:
                continue
            for process in self.processes:
                if process.exitcode is None and process.pid is not None:
                    os.kill(process.pid, sig)
