"""The hand-off: a command whose store a running `eventlens ui` holds runs inside that server.

DuckDB lets one process write a file, and people keep the app open all day. So `eventlens ui`
publishes, beside its store, a loopback address and a secret made at start (published.py, a file
only its user can read); `load`, `pull`, `info`, `series`, `replay` and `delete` find it, check
the server is alive and is who the file says (client.py), and send their parsed options there.
The server runs the same click command on its own thread (jobs.py), with the command's
environment, terminal and typed paths, and streams its output and exit code back (server.py).
"""

from eventlens.handoff.client import hand_off_when_held
from eventlens.handoff.context import in_job, shown
from eventlens.handoff.published import Published, find_live, server_file

__all__ = ["Published", "find_live", "hand_off_when_held", "in_job", "server_file", "shown"]
