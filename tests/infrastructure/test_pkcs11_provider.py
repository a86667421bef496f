"""The pkcs11 key provider against a real SoftHSM2 token (R1.4).

Attacks named: an operator with a shell copies the key file (with pkcs11 there is
none, and the token will not give its keys out, even wrapped); a wrapped data key
stolen from the key store, or moved onto another customer's row, cannot be unwrapped
outside the token or under another context.
"""

from __future__ import annotations

import os

import pkcs11
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pkcs11 import Attribute, ObjectClass

from infrastructure.audit.signer import CheckpointSigner, signature_valid
from infrastructure.crypto.kek import KekError, LocalKek
from infrastructure.crypto.pkcs11_token import Pkcs11Kek, Pkcs11Token, TokenConfig, TokenSigningKey, read_pin


def config(softhsm, label: str = "strongroom", pin: str = "1234-token-pin") -> TokenConfig:
    return TokenConfig(module=softhsm.module, token_label=label, kek_label="kek",
                       signing_key_label="audit", pin=pin)


@pytest.mark.controls("PCI-DSS-3.6.1")
def test_the_kek_is_made_in_the_token_and_the_token_will_not_give_it_out(softhsm):
    softhsm.init_tokens("strongroom")
    kek = Pkcs11Kek(Pkcs11Token(config(softhsm)), create=True)
    context = b"strongroom/dek/v1|subject|profile"
    data_key = os.urandom(32)
    wrapped = kek.wrap(data_key, context)
    assert data_key not in wrapped and kek.unwrap(wrapped, context) == data_key

    def attributes(session):
        (key,) = session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: "kek"})
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            key[Attribute.VALUE]
        return key[Attribute.SENSITIVE], key[Attribute.EXTRACTABLE], key[Attribute.NEVER_EXTRACTABLE]

    assert kek.token.run(attributes) == (True, False, True)
    # A second process (here: a second session) finds the same KEK by its label.
    again = Pkcs11Kek(Pkcs11Token(config(softhsm)))
    assert again.kek_id == kek.kek_id and again.unwrap(wrapped, context) == data_key


def test_a_wrapped_key_moved_to_another_subject_or_taken_elsewhere_does_not_unwrap(softhsm):
    softhsm.init_tokens("strongroom", "other")
    kek = Pkcs11Kek(Pkcs11Token(config(softhsm)), create=True)
    wrapped = kek.wrap(os.urandom(32), b"strongroom/dek/v1|alice|profile")
    with pytest.raises(KekError):
        kek.unwrap(wrapped, b"strongroom/dek/v1|mallory|profile")
    elsewhere = Pkcs11Kek(Pkcs11Token(config(softhsm, "other")), create=True)  # a token of the thief's
    with pytest.raises(KekError):
        elsewhere.unwrap(wrapped, b"strongroom/dek/v1|alice|profile")
    with pytest.raises(KekError):
        LocalKek(os.urandom(32)).unwrap(wrapped, b"strongroom/dek/v1|alice|profile")


def test_a_missing_token_a_wrong_pin_or_a_missing_kek_is_a_clear_error_that_hides_the_pin(softhsm):
    softhsm.init_tokens("strongroom")
    with pytest.raises(KekError, match="no token 'absent'"):
        Pkcs11Token(config(softhsm, "absent"))
    with pytest.raises(KekError, match="PIN .* is wrong") as wrong:
        Pkcs11Token(config(softhsm, pin="not-the-pin-4321"))
    assert "not-the-pin-4321" not in str(wrong.value)
    assert "1234-token-pin" not in repr(config(softhsm))
    with pytest.raises(KekError, match="holds no KEK labelled 'kek'"):
        Pkcs11Kek(Pkcs11Token(config(softhsm)))
    with pytest.raises(KekError, match="cannot open token 'strongroom' .module /nonexistent/libpkcs11.so"):
        Pkcs11Token(TokenConfig(module="/nonexistent/libpkcs11.so", token_label="strongroom",
                                kek_label="kek", signing_key_label="audit", pin="1234-token-pin"))


@pytest.mark.controls("PCI-DSS-8.6.2")
def test_the_pin_comes_from_the_environment_or_an_owner_only_file(tmp_path, monkeypatch):
    monkeypatch.delenv("STRONGROOM_PKCS11_PIN", raising=False)
    with pytest.raises(KekError, match="STRONGROOM_PKCS11_PIN"):
        read_pin(None)
    pin_file = tmp_path / "pin"
    pin_file.write_text("from-file\n")
    pin_file.chmod(0o644)
    with pytest.raises(KekError, match="readable by others"):
        read_pin(pin_file)
    pin_file.chmod(0o600)
    assert read_pin(pin_file) == "from-file"
    monkeypatch.setenv("STRONGROOM_PKCS11_PIN", "from-env")
    assert read_pin(pin_file) == "from-env"


def test_the_audit_key_generated_in_the_token_signs_and_cannot_be_read(softhsm):
    softhsm.init_tokens("strongroom")
    token = Pkcs11Token(config(softhsm))
    assert TokenSigningKey.find(token) is None
    signer = CheckpointSigner(token_key=TokenSigningKey.create(token))
    signature = signer.sign(b"head 42")
    assert signature_valid(signer.public_key, signature, b"head 42")
    assert not signature_valid(signer.public_key, signature, b"head 43")

    def private_attributes(session):
        (key,) = session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: "audit"})
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            key[Attribute.VALUE]
        return key[Attribute.SENSITIVE], key[Attribute.EXTRACTABLE]

    assert token.run(private_attributes) == (True, False)
    found = TokenSigningKey.find(Pkcs11Token(config(softhsm)))
    assert found is not None and CheckpointSigner(token_key=found).key_id == signer.key_id


def test_an_imported_audit_key_keeps_its_public_key_and_becomes_non_extractable(softhsm):
    softhsm.init_tokens("strongroom")
    local = Ed25519PrivateKey.generate()
    seed = local.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                               serialization.NoEncryption())
    token = Pkcs11Token(config(softhsm))
    in_token = CheckpointSigner(token_key=TokenSigningKey.create(token, seed=seed))
    assert in_token.key_id == CheckpointSigner(local).key_id
    assert signature_valid(local.public_key(), in_token.sign(b"checkpoint"), b"checkpoint")

    def extractable(session):
        (key,) = session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: "audit"})
        return key[Attribute.EXTRACTABLE]

    assert token.run(extractable) is False


def test_one_user_of_the_token_closing_does_not_break_the_others(softhsm):
    """PKCS#11 logs in the whole process: the last user's logout ends every session."""
    softhsm.init_tokens("strongroom")
    first = Pkcs11Kek(Pkcs11Token(config(softhsm)), create=True)
    second = Pkcs11Kek(Pkcs11Token(config(softhsm)))
    wrapped = first.wrap(b"k" * 32, b"ctx")
    second.close()
    assert first.unwrap(wrapped, b"ctx") == b"k" * 32
    first.close()  # the last one: logs out; a later use logs in again
    assert first.unwrap(wrapped, b"ctx") == b"k" * 32
    signer = CheckpointSigner(token_key=TokenSigningKey.create(first.token))
    first.close()
    assert signature_valid(signer.public_key, signer.sign(b"m"), b"m")
