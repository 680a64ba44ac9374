"""The file beside a store that says a running eventlens server holds it, and how to reach it.

`<store>.server.json`, mode 0600: the server's pid, its loopback hand-off address, the app's
address and a random secret made at each start. A reader trusts it only when it is its own user's
and private, the pid is alive and the address proves it knows the secret (an HMAC of a fresh
nonce), so a stale file left by a killed server, or a port reused by another program, is ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from eventlens.client import tls_context

SUFFIX = ".server.json"
HELLO = "/v1/hello"
JOBS = "/v1/jobs"


@dataclass(frozen=True)
class Published:
    """What a running server publishes about itself."""

    pid: int
    url: str  # the hand-off, on loopback
    secret: str
    store: str  # the store's real path
    app_url: str | None = None  # where a person opens the app

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


def server_file(store_path: str) -> Path:
    """Where a server holding `store_path` publishes itself (beside the store's real path)."""
    return Path(os.path.realpath(store_path) + SUFFIX)


def proof(secret: str, nonce: str) -> str:
    """What the server answers a hello with: shows it holds the secret without sending it."""
    return hmac.new(secret.encode(), nonce.encode(), hashlib.sha256).hexdigest()


def publish(store_path: str, url: str, app_url: str | None) -> Published:
    """Write the server file for this process (private to its user, replaced atomically)."""
    published = Published(
        os.getpid(), url, secrets.token_urlsafe(32), os.path.realpath(store_path), app_url
    )
    target = server_file(store_path)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(asdict(published), out)
    os.replace(tmp, target)
    return published


def withdraw(published: Published) -> None:
    """Remove the server file, unless a later server has already replaced it with its own."""
    target = server_file(published.store)
    if read(published.store) == published:
        target.unlink(missing_ok=True)


def read(store_path: str) -> Published | None:
    """The server file for a store, if there is one this user can trust; None otherwise."""
    target = server_file(store_path)
    try:
        info = target.stat()
        if info.st_uid != os.getuid() or info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            return None  # someone else's, or readable by others: not ours to follow
        data = json.loads(target.read_text(encoding="utf-8"))
        return Published(
            int(data["pid"]),
            str(data["url"]),
            str(data["secret"]),
            str(data["store"]),
            data.get("app_url"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def find_live(store_path: str, timeout: float = 5.0) -> Published | None:
    """The server holding this store, when one is running and answers as the file says."""
    if store_path == ":memory:":
        return None
    published = read(store_path)
    if published is None:
        return None
    if not _alive(published.pid):
        withdraw(published)  # left by a server that was killed
        return None
    nonce = secrets.token_hex(16)
    try:
        answer = httpx.get(
            published.url + HELLO,
            params={"nonce": nonce},
            headers=published.headers(),
            timeout=timeout,
            verify=tls_context(),
        )
        body = answer.json()
    except (httpx.HTTPError, ValueError):
        return None
    if answer.status_code != 200 or not isinstance(body, dict):
        return None
    if not hmac.compare_digest(str(body.get("proof")), proof(published.secret, nonce)):
        return None
    if body.get("store") != os.path.realpath(store_path):
        return None
    return published


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's: the hello decides
    return True
