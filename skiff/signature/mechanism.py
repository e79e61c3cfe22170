"""GnuPG as the simple-signing mechanism: a thin wrapper around ``gpg``.

Why a subprocess: GnuPG is the keyring users already have (``--sign-by``
names a key in it, ``GNUPGHOME`` chooses it), and OpenPGP verification is
not something to reimplement. Every call builds its argv in ``_argv`` —
never a shell string — and reads gpg's machine-readable status lines from
a private pipe (``--status-fd``), not from stderr, where user IDs and file
names taken from the (untrusted) message could imitate them.

Two kinds of keyring:
- the user's (``GPGMechanism()``; ``GNUPGHOME`` or ~/.gnupg): for signing,
  and for ``standalone-verify`` as skopeo does it;
- an ephemeral one (``ephemeral_keyring``): a fresh temporary home holding
  only the keys a policy requirement names, so verification can only
  succeed for those keys whatever the user's keyring trusts; removed after.

Verification accepts exactly one good signature over a signed (not
encrypted) message, by a key that is neither expired nor revoked, and
returns the fingerprints gpg reports (signing key and its primary key) with
the signed payload. What is *not* checked here: whether the key is the one
the caller wanted (see ``skiff.signature.verify``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from skiff.errors import SignatureError
from skiff.signature.errors import InvalidSignature, UntrustedSigner

GPG = "gpg"
TIMEOUT = 60.0
"""Seconds a gpg run may take; signing can wait on the agent's pinentry."""

MAX_PAYLOAD = 4 << 20
"""Largest signed payload accepted (a simple-signing payload is ~300 bytes)."""

_STATUS_PREFIX = b"[GNUPG:] "

# Status keywords that mean "this is not one good signature".
_BAD = {
    "BADSIG": "the cryptographic signature does not verify (corrupt or altered)",
    "EXPSIG": "the signature has expired",
    "EXPKEYSIG": "the signing key has expired",
    "REVKEYSIG": "the signing key has been revoked",
}
_NOT_SIGNED_ONLY = ("BEGIN_DECRYPTION", "DECRYPTION_FAILED", "ENC_TO", "DECRYPTION_OKAY")


@dataclass(frozen=True)
class VerifiedSignature:
    """What gpg vouches for after a good signature."""

    signer_fingerprint: str
    """The key that made the signature (may be a signing subkey)."""
    primary_fingerprint: str
    """Its primary key (equal to ``signer_fingerprint`` without subkeys)."""
    payload: bytes
    """The signed content, authenticated by the signature."""

    @property
    def fingerprints(self) -> frozenset[str]:
        return frozenset({self.signer_fingerprint, self.primary_fingerprint})


@dataclass(frozen=True)
class _Run:
    returncode: int
    stdout: bytes
    stderr: bytes
    status: list[list[str]]

    def keywords(self) -> list[str]:
        return [line[0] for line in self.status if line]

    def first(self, keyword: str) -> list[str] | None:
        for line in self.status:
            if line and line[0] == keyword:
                return line
        return None

    def error_text(self) -> str:
        lines = [ln.strip() for ln in self.stderr.decode(errors="replace").splitlines()]
        lines = [ln for ln in lines if ln]
        return lines[-1] if lines else f"gpg exited with status {self.returncode}"


class GPGMechanism:
    """One GnuPG home directory; each operation is one ``gpg`` process.

    ``home`` None: the user's keyring (``$GNUPGHOME``, else ~/.gnupg), read
    from the environment by gpg itself.
    """

    def __init__(self, home: Path | None = None, *, binary: str = GPG) -> None:
        self.home = home
        self.binary = binary

    # --- the one argv builder ---------------------------------------------

    def _argv(self, status_fd: int, *args: str) -> list[str]:
        argv = [self.binary]
        if self.home is not None:
            # a private keyring: never start an agent or dirmngr for it
            argv += ["--homedir", str(self.home), "--no-autostart"]
        argv += [
            "--batch",
            "--no-tty",
            "--no-auto-key-retrieve",
            "--status-fd",
            str(status_fd),
            *args,
        ]
        return argv

    def _run(
        self, args: list[str], stdin: bytes, passphrase: str | None = None, what: str = "gpg"
    ) -> _Run:
        status_r, status_w = os.pipe()
        pass_fds = [status_w]
        pass_r = -1
        extra: list[str] = []
        if passphrase is not None:
            pass_r, pass_w = os.pipe()
            # a passphrase is far smaller than a pipe buffer: write it all now
            os.write(pass_w, passphrase.encode() + b"\n")
            os.close(pass_w)
            pass_fds.append(pass_r)
            extra = ["--pinentry-mode", "loopback", "--passphrase-fd", str(pass_r)]
        chunks: list[bytes] = []

        def read_status() -> None:
            with os.fdopen(status_r, "rb") as pipe:
                chunks.append(pipe.read())

        reader = threading.Thread(target=read_status, daemon=True)
        reader.start()
        try:
            try:
                process = subprocess.Popen(
                    self._argv(status_w, *extra, *args),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    pass_fds=pass_fds,
                )
            except FileNotFoundError as exc:
                raise SignatureError(
                    f"{what}: {self.binary!r} is not installed",
                    "install GnuPG (Debian: apt-get install gnupg)",
                ) from exc
            finally:
                os.close(status_w)
                if pass_r >= 0:
                    os.close(pass_r)
            try:
                stdout, stderr = process.communicate(stdin, timeout=TIMEOUT)
            except subprocess.TimeoutExpired as exc:
                process.kill()
                process.communicate()
                raise SignatureError(
                    f"{what}: gpg did not finish within {TIMEOUT:.0f} s",
                    "is gpg-agent waiting for a passphrase? use --sign-passphrase-file",
                ) from exc
        finally:
            reader.join(TIMEOUT)
        raw = b"".join(chunks)
        status = [
            line[len(_STATUS_PREFIX) :].decode(errors="replace").split(" ")
            for line in raw.splitlines()
            if line.startswith(_STATUS_PREFIX)
        ]
        return _Run(process.returncode, stdout, stderr, status)

    # --- operations ---------------------------------------------------------

    def import_keys(self, data: bytes, what: str = "keys") -> list[str]:
        """Import public keys (binary or armored); the primary fingerprints imported.

        SignatureError when ``data`` holds no key at all: a policy naming a
        file that is not a key must not silently trust nothing.
        """
        run = self._run(["--import"], data, what=f"importing {what}")
        fingerprints = []
        for line in run.status:
            if line[0] == "IMPORT_OK" and len(line) >= 3 and line[2] not in fingerprints:
                fingerprints.append(line[2].upper())
        if not fingerprints:
            raise SignatureError(
                f"{what} contains no OpenPGP public key", f"gpg said: {run.error_text()}"
            )
        return fingerprints

    def sign(self, payload: bytes, key: str, passphrase: str | None = None) -> bytes:
        """A signed OpenPGP message (binary, not detached) carrying ``payload``."""
        run = self._run(
            ["--local-user", key, "--sign", "--output", "-"],
            payload,
            passphrase,
            what=f"signing with key {key!r}",
        )
        if run.returncode != 0 or run.first("SIG_CREATED") is None or not run.stdout:
            hint = "list your keys with 'gpg --list-secret-keys'"
            if self.home is None and os.environ.get("GNUPGHOME"):
                hint += f" (GNUPGHOME={os.environ['GNUPGHOME']})"
            raise SignatureError(f"signing with GPG key {key!r} failed: {run.error_text()}", hint)
        return run.stdout

    def verify(self, signature: bytes) -> VerifiedSignature:
        """Check ``signature`` against this keyring; the signer and the payload.

        Raises UntrustedSigner when the signing key is not in the keyring,
        InvalidSignature for anything else that is not one good signature.
        """
        if not signature:
            raise InvalidSignature("the signature is empty")
        run = self._run(["--trust-model", "always", "--decrypt"], signature, what="verifying")
        words = run.keywords()
        if any(word in _NOT_SIGNED_ONLY for word in words):
            raise InvalidSignature("the signature is an encrypted message, not a signed one")
        if words.count("NEWSIG") > 1:
            raise InvalidSignature("the message carries more than one signature")
        for keyword, reason in _BAD.items():
            line = run.first(keyword)
            if line is not None:
                key = line[1] if len(line) > 1 else "?"
                raise InvalidSignature(f"signature by key {key}: {reason}")
        errsig = run.first("ERRSIG")
        if errsig is not None:
            # ERRSIG <keyid> <pkalgo> <hashalgo> <class> <time> <rc> [<fpr>]
            rc = errsig[6] if len(errsig) > 6 else ""
            key = errsig[7] if len(errsig) > 7 and errsig[7] != "-" else errsig[1]
            if rc == "9" or run.first("NO_PUBKEY") is not None:
                raise UntrustedSigner(f"signed by key {key.upper()}, which is not trusted", key)
            raise InvalidSignature(f"the signature by key {key} cannot be checked (gpg rc {rc})")
        valid = run.first("VALIDSIG")
        if run.first("GOODSIG") is None or valid is None or run.returncode != 0:
            if "NODATA" in words or not words:
                raise InvalidSignature("not an OpenPGP signed message (corrupt signature bytes?)")
            raise InvalidSignature(f"not a valid signature: {run.error_text()}")
        if len(run.stdout) > MAX_PAYLOAD:
            raise InvalidSignature(f"the signed payload is larger than {MAX_PAYLOAD} bytes")
        # VALIDSIG <fpr> <date> <ts> <expire> <version> <reserved> <pkalgo>
        #          <hashalgo> <class> [<primary-fpr>]
        signer = valid[1].upper()
        primary = valid[10].upper() if len(valid) > 10 else signer
        return VerifiedSignature(signer, primary, run.stdout)

    def fingerprints_of(self, key: str) -> list[str]:
        """Fingerprints of the keys in this keyring matching ``key`` (any gpg key spec)."""
        run = self._run(["--with-colons", "--fingerprint", "--list-keys", key], b"")
        if run.returncode != 0:
            return []
        return _colon_fingerprints(run.stdout)


def _colon_fingerprints(listing: bytes) -> list[str]:
    """Primary-key fingerprints of a ``--with-colons`` listing."""
    out: list[str] = []
    expect_fpr = False
    for line in listing.decode(errors="replace").splitlines():
        fields = line.split(":")
        if fields[0] == "pub":
            expect_fpr = True
        elif fields[0] == "fpr" and expect_fpr and len(fields) > 9:
            out.append(fields[9].upper())
            expect_fpr = False
        elif fields[0] in ("sub", "uid"):
            expect_fpr = False
    return out


@dataclass(frozen=True)
class KeyDescription:
    """A public key as ``image trust show`` lists it."""

    fingerprint: str
    user_ids: tuple[str, ...]


def describe_keys(data: bytes, binary: str = GPG) -> list[KeyDescription]:
    """The keys in a key file, without importing them anywhere (``gpg --show-keys``)."""
    mech = GPGMechanism(binary=binary)
    run = mech._run(["--with-colons", "--show-keys"], data, what="reading keys")
    keys: list[KeyDescription] = []
    fingerprint: str | None = None
    uids: list[str] = []
    for line in run.stdout.decode(errors="replace").splitlines():
        fields = line.split(":")
        if fields[0] == "pub":
            if fingerprint is not None:
                keys.append(KeyDescription(fingerprint, tuple(uids)))
            fingerprint, uids = "", []
        elif fields[0] == "fpr" and fingerprint == "" and len(fields) > 9:
            fingerprint = fields[9].upper()
        elif fields[0] == "uid" and fingerprint is not None and len(fields) > 9:
            uids.append(fields[9])
    if fingerprint is not None:
        keys.append(KeyDescription(fingerprint, tuple(uids)))
    return keys


@contextmanager
def ephemeral_keyring(
    keys: Iterable[tuple[bytes, str]], tmp_dir: Path | None = None, binary: str = GPG
) -> Iterator[tuple[GPGMechanism, frozenset[str]]]:
    """A temporary keyring holding only ``keys`` ((data, description) pairs).

    Yields the mechanism and the primary fingerprints imported; the home
    directory is removed on exit. Raises SignatureError if a key blob holds
    no key at all (see ``import_keys``).
    """
    base = tmp_dir if tmp_dir is not None and tmp_dir.is_dir() else None
    home = Path(tempfile.mkdtemp(prefix="skiff-gpg-", dir=base))
    try:
        home.chmod(0o700)
        mech = GPGMechanism(home, binary=binary)
        trusted: set[str] = set()
        for data, what in keys:
            trusted.update(mech.import_keys(data, what))
        yield mech, frozenset(trusted)
    finally:
        shutil.rmtree(home, ignore_errors=True)
