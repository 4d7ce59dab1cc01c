"""The gateway's signing keys: Ed25519 private JWKs on disk, one active, rotated and retired safely.

Layout: ``<HATS_VAR_DIR>/keys/<kid>.jwk`` (directory 0700, files 0600), one private JWK
per file with a ``created_at`` member (epoch seconds). Files are immutable once written
(named by their RFC 7638 thumbprint), so the set of file names fully describes the ring:

* a new key is published at once but signs only ``publish_ahead_s`` later: a service
  that meets its kid in a token has then either fetched the JWKS since (and knows it) or
  fetched it longer ago than its refetch interval (and may fetch again), so no token is
  refused in between;
* the newest key past that point signs (the *active* key);
* a key stopped signing when the next newer one became active; it stays published in the
  JWKS for ``retire_after_s`` after that, so every token it signed can still be verified,
  and is then deleted.

Several gateway processes on one host share the directory. Writers (rotation, retirement)
hold an exclusive ``fcntl`` lock on ``.lock`` and re-read the directory under it, so two
processes that both find the active key too old still create one new key between them.
Readers need no lock: keys are written to a temporary file and renamed into place, and
every accessor notices a changed file list (another process rotated) and reloads.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from joserfc.jwk import KeySet, OKPKey

from shared.private_files import fsync_directory, write_private

log = logging.getLogger(__name__)

ALGORITHM = "EdDSA"
CURVE: Literal["Ed25519"] = "Ed25519"
_SUFFIX = ".jwk"
#: The only members a published key carries: the public half and its metadata. Built from
#: this allow-list rather than by removing private members, so nothing secret can slip out.
_PUBLIC_MEMBERS = ("kty", "crv", "x", "kid", "alg", "use")


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One key of the ring: the private OKP key (with its kid) and when it was created."""

    kid: str
    key: OKPKey
    created_at: float

    def public_jwk(self) -> dict[str, Any]:
        """The public JWK (RFC 7517) of this key: never the private ``d``."""
        full = self.key.as_dict(private=False)
        return {name: full[name] for name in _PUBLIC_MEMBERS if name in full}


class KeyRing:
    """Ed25519 signing keys persisted under ``directory``, shared by the gateway processes of a host.

    ``max_age_s``: the active key is replaced once older than this (see :meth:`maintain`).
    ``retire_after_s``: how long a key stays published after it stopped signing; must be
    at least the longest token lifetime plus clock leeway (``GatewaySettings`` checks it).
    ``publish_ahead_s``: how long a new key is published before it signs; more than the
    verifiers' JWKS refetch interval (``shared.auth.JwksKeySource``, 5 s).
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_age_s: float,
        retire_after_s: float,
        publish_ahead_s: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if retire_after_s <= 0 or max_age_s <= 0:
            raise ValueError("max_age_s and retire_after_s must be positive")
        self.directory = directory
        self.max_age_s = max_age_s
        self.retire_after_s = retire_after_s
        self.publish_ahead_s = publish_ahead_s
        self._clock = clock
        # One tuple, replaced whole: housekeeping reloads in a worker thread while the event
        # loop reads, and must never see the file names of one load with the keys of another.
        self._state: tuple[frozenset[str] | None, list[SigningKey], KeySet] = (None, [], KeySet([]))

    @property
    def _keys(self) -> list[SigningKey]:
        """Loaded keys, newest first."""
        return self._state[1]

    # --- start-up and maintenance -------------------------------------------------------

    def open(self) -> None:
        """Create the directory if needed, load the keys, create the first one, rotate a stale one.

        Blocking (file lock, fsync): call it at start-up, or through ``asyncio.to_thread``.
        """
        self._ensure_directory()
        with self._locked():
            self._reload()
            if not self._keys:
                self._add_new_key()
        self.maintain()

    def maintain(self) -> bool:
        """Rotate the active key if it is older than ``max_age_s``; delete keys past retirement.

        Returns whether the ring changed. Cheap when there is nothing to do (no lock taken).
        Blocking: from async code, run it with ``asyncio.to_thread``.
        """
        self._refresh()
        if not self._needs_maintenance():
            return False
        with self._locked():
            self._reload()  # another process may have done it while we waited for the lock
            changed = False
            if self._active_too_old():
                self._add_new_key()
                changed = True
            return self._retire() or changed

    def rotate(self) -> SigningKey:
        """Create a new active key now; older keys stay published until retired. Blocking."""
        self._ensure_directory()
        with self._locked():
            self._reload()
            new = self._add_new_key()
            self._retire()
            return new

    # --- what the gateway uses -------------------------------------------------------

    @property
    def active(self) -> SigningKey:
        """The key that signs new tokens: the newest one published long enough (or the only one)."""
        self._refresh()
        keys = self._keys
        if not keys:
            raise RuntimeError(f"key ring {self.directory} is empty; call open() first")
        now = self._clock()
        for key in keys[:-1]:
            if now >= self._signs_from(key):
                return key
        return keys[-1]

    def keys(self) -> list[SigningKey]:
        """Every published key, newest first."""
        self._refresh()
        return list(self._keys)

    def public_jwks(self) -> dict[str, Any]:
        """The JWK set served at ``/.well-known/jwks.json``: public members only."""
        return {"keys": [k.public_jwk() for k in self.keys()]}

    def keyset(self) -> KeySet:
        """The public keys as a joserfc ``KeySet`` (for ``shared.auth.LocalKeySource``)."""
        self._refresh()
        return self._state[2]

    # --- internals ---------------------------------------------------------------------

    def _needs_maintenance(self) -> bool:
        return self._active_too_old() or any(True for _ in self._due_for_retirement())

    def _active_too_old(self) -> bool:
        return not self._keys or self._clock() - self._keys[0].created_at >= self.max_age_s

    def _signs_from(self, key: SigningKey) -> float:
        return key.created_at + self.publish_ahead_s

    def _due_for_retirement(self) -> Iterator[SigningKey]:
        now = self._clock()
        # keys[i] stopped signing when keys[i-1] (the next newer one) became active.
        for newer, older in zip(self._keys, self._keys[1:], strict=False):
            if now - self._signs_from(newer) >= self.retire_after_s:
                yield older

    def _retire(self) -> bool:
        due = list(self._due_for_retirement())
        for key in due:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / f"{key.kid}{_SUFFIX}").unlink()
            log.info("retired signing key %s", key.kid)
        if due:
            fsync_directory(self.directory)
            self._reload()
        return bool(due)

    def _add_new_key(self) -> SigningKey:
        key = OKPKey.generate_key(CURVE, private=True)
        kid = key.thumbprint()
        created_at = self._clock()
        # A clock that went backwards must not make the new key look older than the active one.
        if self._keys and created_at <= self._keys[0].created_at:
            created_at = self._keys[0].created_at + 1e-3
        document = {**key.as_dict(private=True), "kid": kid, "alg": ALGORITHM, "use": "sig", "created_at": created_at}
        write_private(self.directory / f"{kid}{_SUFFIX}", orjson.dumps(document))
        self._reload()
        log.info("new signing key %s, signing in %.0f s", kid, self.publish_ahead_s if len(self._keys) > 1 else 0)
        return self._keys[0]

    def _refresh(self) -> None:
        """Reload if the set of key files changed (another process rotated or retired)."""
        try:
            names = frozenset(n for n in os.listdir(self.directory) if n.endswith(_SUFFIX))
        except FileNotFoundError:
            names = frozenset()
        if names != self._state[0]:
            self._reload(names)

    def _reload(self, names: frozenset[str] | None = None) -> None:
        if names is None:
            names = frozenset(n for n in os.listdir(self.directory) if n.endswith(_SUFFIX))
        keys = []
        for name in names:
            loaded = self._load_file(self.directory / name)
            if loaded is not None:
                keys.append(loaded)
        keys.sort(key=lambda k: (k.created_at, k.kid), reverse=True)
        self._state = (names, keys, KeySet([OKPKey.import_key(k.public_jwk()) for k in keys]))

    def _load_file(self, path: Path) -> SigningKey | None:
        try:
            mode = path.stat().st_mode
            if mode & 0o077:
                # Readable by others: tighten rather than refuse, the key is ours either way.
                log.warning("signing key %s had mode %o; setting 0600", path.name, mode & 0o777)
                path.chmod(0o600)
            document = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return None  # retired by another process between the listing and the read
        except (OSError, orjson.JSONDecodeError) as exc:
            log.error("unreadable signing key %s: %s", path.name, exc)
            return None
        try:
            created_at = float(document.pop("created_at"))
            key = OKPKey.import_key(document)
        except Exception as exc:  # a broken file must not take the gateway down
            log.error("invalid signing key %s: %s", path.name, exc)
            return None
        # The file name, the kid member and the key material must agree: the kid is the
        # RFC 7638 thumbprint, so a tampered or mixed-up file is noticed here.
        if (
            key.curve_name != CURVE
            or not key.is_private
            or key.thumbprint() != key.kid
            or path.name != f"{key.kid}{_SUFFIX}"
        ):
            log.error("signing key %s does not match its kid; ignored", path.name)
            return None
        return SigningKey(kid=key.kid, key=key, created_at=created_at)

    def _ensure_directory(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.directory.stat().st_mode & 0o077:
            self.directory.chmod(0o700)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock
