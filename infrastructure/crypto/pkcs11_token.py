"""The `pkcs11` key provider (R1.4): the KEK and the audit key inside a token.

A hardware security module (SoftHSM2 in tests; the same calls drive a real HSM)
holds two objects that Strongroom asks to work but can never read:

    KEK          AES-256 secret key, label `pkcs11_kek_label`
    audit key    Ed25519 private key (CKM_EDDSA), label `pkcs11_signing_key_label`,
                 with its public key beside it under the same label

Both are made with CKA_SENSITIVE true and CKA_EXTRACTABLE false, so the token
refuses to hand out their value, wrapped or not. The attack this stops: an operator
with a shell on the host copies the KEK file (and a copy of the key store) and reads
every customer at leisure elsewhere. With `pkcs11` there is no key file to copy, and
a wrapped data key copied out of the key store cannot be unwrapped outside the token.

Stored layout of a wrapped data key (the same shape as `LocalKek`'s):

    nonce (12 bytes) || AES-256-GCM(KEK, data key, associated data = context)

GCM runs inside the token (C_Encrypt/C_Decrypt with CKM_AES_GCM) with the context
(`strongroom/dek/v1|subject|kind`) as associated data, so a wrapped key moved onto
another subject's row fails to unwrap, exactly as with the local KEK.

The PIN comes from the environment variable `STRONGROOM_PKCS11_PIN` or from the file
named by `pkcs11_pin_file`, never from a command-line argument (other users can read
a process's arguments) and never into a log or an error message.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pkcs11
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import PKCS11Error
from pkcs11.mechanisms import GCMParams
from pkcs11.util.ec import encode_named_curve_parameters

from infrastructure.crypto.kek import KekError

NONCE_BYTES = 12
PIN_ENV = "STRONGROOM_PKCS11_PIN"
DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
_ED25519_OID = "1.3.101.112"
# What no key made here may ever be: readable, or exportable even wrapped.
_LOCKED = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.TOKEN: True,
           Attribute.PRIVATE: True}


@dataclass(frozen=True)
class TokenConfig:
    """Where the token is and how its objects are named; `pin` is never printed."""

    module: str
    token_label: str
    kek_label: str
    signing_key_label: str
    pin: str

    def __repr__(self) -> str:  # the PIN stays out of tracebacks and logs
        return (f"TokenConfig(module={self.module!r}, token_label={self.token_label!r}, "
                f"kek_label={self.kek_label!r}, signing_key_label={self.signing_key_label!r})")


def read_pin(pin_file: Path | None, *, env: str = PIN_ENV) -> str:
    """The user PIN from `env`, else from `pin_file` (owner-readable only)."""
    value = os.environ.get(env)
    if value:
        return value
    if pin_file is None:
        raise KekError(f"the pkcs11 key provider needs the token's PIN: set {env} "
                       "or the pkcs11_pin_file setting")
    try:
        mode = pin_file.stat().st_mode
    except OSError:
        raise KekError(f"the PIN file {pin_file} cannot be read") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        # Another local user could read the PIN that opens the token.
        raise KekError(f"{pin_file} is readable by others: run `chmod 600 {pin_file}`")
    pin = pin_file.read_text().strip()
    if not pin:
        raise KekError(f"the PIN file {pin_file} is empty")
    return pin


@dataclass
class _Login:
    """The one logged-in session a process keeps per token (PKCS#11 logs in a whole
    application, not a session: a second login fails and a logout ends them all)."""

    session: Any
    pin_digest: bytes
    pid: int
    users: int
    lock: threading.Lock


_LOGINS: dict[tuple[str, str], _Login] = {}
_LOGINS_LOCK = threading.Lock()


_LIBRARY_PIDS: dict[str, int] = {}


def _library(module: str) -> Any:
    """The loaded module, initialised in this process. PKCS#11 forbids a child to use
    the library state it inherited: `strongroom serve` builds once in the master,
    then forks its workers, so a worker finalises and initialises it afresh."""
    lib = pkcs11.lib(module)
    if _LIBRARY_PIDS.setdefault(module, os.getpid()) != os.getpid():
        try:
            lib.finalize()
        except PKCS11Error:
            pass
        lib.initialize()
        _LIBRARY_PIDS[module] = os.getpid()
    return lib


def forget_sessions() -> None:
    """Drop every cached session without logging out: for after the library itself
    was finalised and initialised again (its old session handles are dead)."""
    with _LOGINS_LOCK:
        _LOGINS.clear()


class Pkcs11Token:
    """A logged-in session with the token, shared by the KEK and the signer.

    PKCS#11 sessions may not be used by two threads at once, so every call holds the
    token's lock; a forked child (a gunicorn worker) initialises the library afresh.
    """

    def __init__(self, config: TokenConfig) -> None:
        self.config = config
        self._key = (config.module, config.token_label)
        self._handles: dict[tuple[int, str], tuple[Any, Any]] = {}
        self._login: _Login | None = None
        self._login = self._acquire()

    def _acquire(self) -> _Login:
        digest = hashlib.sha256(self.config.pin.encode()).digest()
        with _LOGINS_LOCK:
            login = _LOGINS.get(self._key)
            if login is not None and login.pid != os.getpid():
                _LOGINS.clear()  # a forked child: its parent's handles mean nothing here
                login = None
            if login is not None:
                if not hmac.compare_digest(login.pin_digest, digest):
                    raise KekError(f"the PIN for {self._where()} is wrong")
                login.users += 1
                return login
            login = _Login(self._log_in(), digest, os.getpid(), 1, threading.Lock())
            _LOGINS[self._key] = login
            return login

    def _where(self) -> str:
        return f"token {self.config.token_label!r} (module {self.config.module})"

    def _log_in(self) -> Any:
        where = self._where()
        try:
            token = _library(self.config.module).get_token(token_label=self.config.token_label)
            return token.open(user_pin=self.config.pin, rw=True)
        except pkcs11.exceptions.NoSuchToken:
            raise KekError(f"no {where}: is the HSM connected and the token label right?") from None
        except (pkcs11.exceptions.PinIncorrect, pkcs11.exceptions.PinInvalid, pkcs11.exceptions.PinLenRange):
            raise KekError(f"the PIN for {where} is wrong") from None
        except pkcs11.exceptions.PinLocked:
            raise KekError(f"the PIN for {where} is locked") from None
        except (PKCS11Error, OSError) as exc:
            raise KekError(f"cannot open {where}: {type(exc).__name__}") from None

    def run(self, action: Any) -> Any:
        """Call `action(session)` with the lock held; token errors become KekError."""
        login = self._login
        if login is None or login.pid != os.getpid() or _LOGINS.get(self._key) is not login:
            self._login = login = self._acquire()
        with login.lock:
            try:
                return action(login.session)
            except PKCS11Error as exc:
                raise KekError(f"the token refused the operation ({type(exc).__name__})") from None

    def close(self) -> None:
        """Give the session back; the last user logs out of the token."""
        login, self._login = self._login, None
        if login is None:
            return
        with _LOGINS_LOCK:
            login.users -= 1
            if login.users > 0 or _LOGINS.get(self._key) is not login:
                return
            del _LOGINS[self._key]
        if login.pid == os.getpid():
            with login.lock:
                try:
                    login.session.close()
                except PKCS11Error:
                    pass

    def object(self, session: Any, object_class: ObjectClass, label: str) -> Any:
        """The object's handle in `session`, found once per session: a handle from a
        session that was closed (another user of the token logged out) is useless."""
        cached = self._handles.get((int(object_class), label))
        if cached is not None and cached[0] is session:
            return cached[1]
        found = self.find(session, object_class, label)
        if found is None:
            raise KekError(f"token {self.config.token_label!r} no longer holds {label!r}")
        self._handles[(int(object_class), label)] = (session, found)
        return found

    @staticmethod
    def find(session: Any, object_class: ObjectClass, label: str) -> Any:
        found = list(session.get_objects({Attribute.CLASS: object_class, Attribute.LABEL: label}))
        if len(found) > 1:
            raise KekError(f"the token holds {len(found)} objects labelled {label!r}; expected one")
        return found[0] if found else None


class Pkcs11Kek:
    """A KekProvider whose AES key never leaves the token (see the module docstring)."""

    def __init__(self, token: Pkcs11Token, *, create: bool = False) -> None:
        self.token = token
        label = token.config.kek_label

        def locate(session: Any) -> Any:
            key = Pkcs11Token.find(session, ObjectClass.SECRET_KEY, label)
            if key is None and create:
                key = session.generate_key(
                    KeyType.AES, 256, label=label, id=os.urandom(16), store=True,
                    template={**_LOCKED, Attribute.ENCRYPT: True, Attribute.DECRYPT: True,
                              Attribute.WRAP: False, Attribute.UNWRAP: False})
            if key is None:
                raise KekError(f"token {token.config.token_label!r} holds no KEK labelled {label!r}")
            if key[Attribute.EXTRACTABLE] or not key[Attribute.SENSITIVE]:
                # A KEK the token would export is no better than a key file.
                raise KekError(f"the KEK {label!r} in the token is extractable; make a new one")
            return bytes(key[Attribute.ID])

        self._label = label
        object_id = token.run(locate)
        # Names the KEK without saying anything about it: the token object's random id.
        self._kek_id = hashlib.sha256(b"strongroom-kek-id\x00pkcs11\x00" + object_id).hexdigest()[:16]

    @property
    def kek_id(self) -> str:
        return self._kek_id

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self.token.run(lambda session: self._object(session).encrypt(
            data_key, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, context)))
        return nonce + bytes(sealed)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        nonce, sealed = wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:]
        try:
            return bytes(self.token.run(lambda session: self._object(session).decrypt(
                sealed, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, context))))
        except KekError:
            raise KekError("a data key does not unwrap under this KEK") from None

    def _object(self, session: Any) -> Any:
        return self.token.object(session, ObjectClass.SECRET_KEY, self._label)

    def close(self) -> None:
        self.token.close()


class TokenSigningKey:
    """The Ed25519 audit key held in the token: signs, never leaves."""

    def __init__(self, token: Pkcs11Token, public_raw: bytes) -> None:
        self.token = token
        self.public_raw = public_raw

    @classmethod
    def find(cls, token: Pkcs11Token) -> TokenSigningKey | None:
        """The key pair labelled `signing_key_label`, or None when the token has none."""
        label = token.config.signing_key_label

        def locate(session: Any) -> bytes | None:
            private = Pkcs11Token.find(session, ObjectClass.PRIVATE_KEY, label)
            if private is None:
                return None
            public = Pkcs11Token.find(session, ObjectClass.PUBLIC_KEY, label)
            if public is None:
                raise KekError(f"the token holds no public key labelled {label!r} beside the audit key")
            if private[Attribute.EXTRACTABLE] or not private[Attribute.SENSITIVE]:
                # A key the token would export could sign anywhere: no better than a file.
                raise KekError(f"the audit key {label!r} in the token is extractable; make a new one")
            return _raw_point(bytes(public[Attribute.EC_POINT]))

        found = token.run(locate)
        return None if found is None else cls(token, found)

    @classmethod
    def create(cls, token: Pkcs11Token, *, seed: bytes | None = None) -> TokenSigningKey:
        """Put an audit key pair in the token: `seed` imported (an instance that began
        with a local KEK keeps its key, so its history still verifies), or, without
        one, a new pair generated inside the token. Either way non-extractable."""
        label = token.config.signing_key_label
        params = encode_named_curve_parameters(_ED25519_OID)
        object_id = os.urandom(16)

        def make(session: Any) -> None:
            if seed is None:
                session.generate_keypair(
                    KeyType.EC_EDWARDS, mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN, store=True,
                    label=label, id=object_id,
                    public_template={Attribute.EC_PARAMS: params, Attribute.VERIFY: True},
                    private_template={**_LOCKED, Attribute.SIGN: True})
                return
            session.create_object({
                **_LOCKED, Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.EC_EDWARDS,
                Attribute.EC_PARAMS: params, Attribute.VALUE: seed, Attribute.SIGN: True,
                Attribute.LABEL: label, Attribute.ID: object_id})
            session.create_object({
                Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.EC_EDWARDS,
                Attribute.TOKEN: True, Attribute.EC_PARAMS: params, Attribute.VERIFY: True,
                Attribute.EC_POINT: b"\x04\x20" + _ed25519_public(seed), Attribute.LABEL: label,
                Attribute.ID: object_id})

        token.run(make)
        made = cls.find(token)
        if made is None:  # pragma: no cover - the token accepted the objects and lost them
            raise KekError(f"the token did not keep the audit key {label!r}")
        return made

    def sign(self, message: bytes) -> bytes:
        label = self.token.config.signing_key_label
        return bytes(self.token.run(lambda session: self.token.object(session, ObjectClass.PRIVATE_KEY, label)
                                    .sign(message, mechanism=Mechanism.EDDSA)))


def _raw_point(ec_point: bytes) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING around the 32-byte Ed25519 key (some tokens
    give the bare 32 bytes)."""
    if len(ec_point) == 34 and ec_point[:2] == b"\x04\x20":
        return ec_point[2:]
    if len(ec_point) == 32:
        return ec_point
    raise KekError("the token's audit public key is not an Ed25519 point")


def _ed25519_public(seed: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
