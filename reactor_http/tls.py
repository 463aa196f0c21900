"""The server's TLS context, with one-line errors that say which file is wrong and how.

`make_tls_context(certfile, keyfile)` loads a PEM certificate chain and its private key (from
`keyfile`, or from `certfile` when the key is stored with the certificate) into a server context
with the ssl module's recommended settings, TLS 1.2 at least. OpenSSL's own errors name neither
file nor cause ("[SSL] PEM lib (_ssl.c:3926)"), so the files are looked at first and each usual
mistake gets its own message, raised as ValueError. Start-up code only.
"""

from __future__ import annotations

import ssl

# PEM labels (RFC 7468): a certificate, and a private key in any of its encodings (PKCS #8,
# PKCS #1 "RSA PRIVATE KEY", SEC 1 "EC PRIVATE KEY").
_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
_PRIVATE_KEY = b"PRIVATE KEY-----"
# An encrypted key: PKCS #8 "ENCRYPTED PRIVATE KEY", or the legacy "Proc-Type: 4,ENCRYPTED".
_ENCRYPTED = b"ENCRYPTED"


def make_tls_context(certfile: str, keyfile: str | None = None) -> ssl.SSLContext:
    """A server TLS context for `certfile` (+ `keyfile`); ValueError says what is wrong."""
    cert_text = _read(certfile, "--certfile")
    if _CERTIFICATE not in cert_text:
        raise ValueError(f"--certfile {certfile!r} holds no PEM certificate")
    key_path, key_flag = (keyfile, "--keyfile") if keyfile else (certfile, "--certfile")
    key_text = cert_text if keyfile is None else _read(keyfile, "--keyfile")
    if _PRIVATE_KEY not in key_text:
        if keyfile is None:
            raise ValueError(f"--certfile {certfile!r} holds no private key: give the key's "
                             f"file with --keyfile")
        raise ValueError(f"--keyfile {keyfile!r} holds no PEM private key")
    if _ENCRYPTED in key_text:
        raise ValueError(f"the private key in {key_flag} {key_path!r} is encrypted; this "
                         f"server cannot ask for a passphrase, so give an unencrypted key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        # A password callback that refuses: OpenSSL must never prompt on the terminal.
        context.load_cert_chain(certfile, keyfile, password=_no_password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ValueError(f"the private key in {key_flag} {key_path!r} does not match the "
                             f"certificate in --certfile {certfile!r}") from None
        raise ValueError(f"cannot load the TLS certificate (--certfile {certfile!r}) and key "
                         f"({key_flag} {key_path!r}): {exc.reason or exc}") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot load the TLS certificate (--certfile {certfile!r}) and key "
                         f"({key_flag} {key_path!r}): {exc}") from None
    context.set_alpn_protocols(["http/1.1"])
    return context


def _read(path: str, flag: str) -> bytes:
    """The bytes of a PEM file, or ValueError naming the option."""
    try:
        with open(path, "rb") as file:
            return file.read()
    except IsADirectoryError:
        raise ValueError(f"{flag} {path!r} does not exist or is not a file") from None
    except OSError as exc:
        raise ValueError(f"{flag} {path!r}: cannot read it: {exc.strerror}") from None


def _no_password() -> bytes:
    """The password callback: an encrypted key is refused, never prompted for."""
    raise ValueError("the private key is encrypted")
