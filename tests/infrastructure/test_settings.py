"""Typed settings: defaults < strongroom.json < STRONGROOM_* < explicit overrides, each
value checked at load with a message that names the setting (R7.1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infrastructure.composition import ConfigurationError, Settings


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("TLS_CERT", "TLS_KEY", "READINESS_TIMEOUT", "CHECKPOINT_DIR", "CHECKPOINT_ROWS",
                 "CHECKPOINT_SECONDS", "CREATE_SCHEMA", "DATABASE_URL", "KEYS_DATABASE_URL", "PROJECTION",
                 "BLIND_INDEX_BITS", "KEY_PROVIDER", "PKCS11_TOKEN_LABEL", "PKCS11_PIN_FILE", "ALLOW_LOCAL_KEK"):
        monkeypatch.delenv(f"STRONGROOM_{name}", raising=False)
    folder = tmp_path / "instance"
    folder.mkdir()
    return folder


def write_config(instance: Path, **values: object) -> None:
    (instance / "strongroom.json").write_text(json.dumps(values))


def test_defaults_live_in_the_instance_folder(instance: Path) -> None:
    settings = Settings.load(instance)
    assert settings.tls_cert == instance.resolve() / "tls" / "cert.pem"
    assert settings.tls_key == instance.resolve() / "tls" / "key.pem"
    assert settings.checkpoint_dir == instance.resolve() / "checkpoints"
    assert (settings.checkpoint_rows, settings.checkpoint_seconds) == (1000, 30.0)
    assert settings.readiness_timeout == 2.0 and settings.create_schema is True
    assert settings.request_deadline_seconds == 5.0
    assert settings.backup_targets is None


def test_file_then_environment_then_overrides(instance: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(instance, tls_cert="certs/api.pem", checkpoint_rows=50, readiness_timeout=1.5,
                 created_at="2026-12-04T00:00:00+00:00")
    monkeypatch.setenv("STRONGROOM_CHECKPOINT_ROWS", "70")
    monkeypatch.setenv("STRONGROOM_CREATE_SCHEMA", "false")
    monkeypatch.setenv("STRONGROOM_TLS_KEY", "/etc/strongroom/key.pem")
    monkeypatch.setenv("STRONGROOM_REQUEST_DEADLINE_SECONDS", "2.5")
    settings = Settings.load(instance, {"readiness_timeout": 0.5})
    assert settings.tls_cert == instance.resolve() / "certs" / "api.pem"  # relative: from the instance
    assert settings.tls_key == Path("/etc/strongroom/key.pem")
    assert settings.checkpoint_rows == 70 and settings.create_schema is False
    assert settings.readiness_timeout == 0.5
    assert settings.request_deadline_seconds == 2.5


@pytest.mark.parametrize(("name", "value", "message"), [
    ("checkpoint_rows", "lots", r"checkpoint_rows \(STRONGROOM_CHECKPOINT_ROWS or strongroom.json\) must be a whole number"),
    ("checkpoint_rows", 0, "must be greater than 0"),
    ("checkpoint_seconds", -1, "checkpoint_seconds .* must be greater than 0"),
    ("readiness_timeout", "nan", "readiness_timeout .* must be a number"),
    ("request_deadline_seconds", 0, "request_deadline_seconds .* must be greater than 0"),
    ("create_schema", "perhaps", "create_schema .* must be true or false"),
    ("backup_targets", "backups", "backup_targets must be a list of objects"),
    ("key_provider", "hsm", r"key_provider .* must be 'local' or 'pkcs11'"),
    ("pkcs11_token_label", 7, "pkcs11_token_label .* must be text"),
    ("allow_local_kek", "maybe", "allow_local_kek .* must be true or false"),
])
def test_a_bad_value_stops_loading_with_a_message_naming_it(instance: Path, name: str, value: object,
                                                            message: str) -> None:
    write_config(instance, **{name: value})
    with pytest.raises(ConfigurationError, match=message):
        Settings.load(instance)


@pytest.mark.controls("ASVS-V13")
def test_a_misspelt_key_is_refused_rather_than_ignored(instance: Path) -> None:
    """A typo (`checkpoint_row`) must not leave the default silently in force."""
    write_config(instance, checkpoint_row=10)
    with pytest.raises(ConfigurationError, match="unknown setting: checkpoint_row"):
        Settings.load(instance)
    with pytest.raises(ConfigurationError, match="unknown setting: tls_certificate"):
        Settings.load(None, {"instance": str(instance), "tls_certificate": "x"})


def test_strongroom_variables_that_are_not_settings_are_left_alone(instance: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRONGROOM_DEBUG", "1")
    monkeypatch.setenv("STRONGROOM_BENCH_PG_URL", "postgresql://elsewhere/db")
    assert Settings.load(instance).instance == instance.resolve()


@pytest.mark.controls("PCI-DSS-8.6.2")
def test_the_pkcs11_settings_are_typed_and_the_pin_is_not_one_of_them(instance: Path) -> None:
    """A PIN in strongroom.json would be one more secret in a file anyone with the
    folder can copy: it is refused; the PIN file is a path, taken from the instance."""
    write_config(instance, key_provider="pkcs11", pkcs11_token_label="vault", pkcs11_pin_file="secrets/pin")
    settings = Settings.load(instance)
    assert (settings.key_provider, settings.pkcs11_token_label) == ("pkcs11", "vault")
    assert settings.pkcs11_pin_file == instance.resolve() / "secrets" / "pin"
    assert settings.pkcs11_module == "/usr/lib/softhsm/libsofthsm2.so" and settings.allow_local_kek is False
    write_config(instance, key_provider="pkcs11", pkcs11_pin="1234")
    with pytest.raises(ConfigurationError, match="unknown setting: pkcs11_pin$"):
        Settings.load(instance)
