from __future__ import annotations

from pathlib import Path

import pytest

from service.config import load_settings, settings_reference
from service.errors import ConfigError

REQUIRED = {
    "TRIBUTARY_DATABASE_URL": "postgresql://u@db:5432/x",
    "TRIBUTARY_KAFKA_BOOTSTRAP_SERVERS": "k:9092",
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def away_from_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No config/ directory here: only what a test writes or passes counts."""
    monkeypatch.chdir(tmp_path)


def test_an_environment_without_its_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "prod.toml").write_text("")
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={**REQUIRED, "TRIBUTARY_ENV": "staging"})
    assert str(caught.value) == (
        "TRIBUTARY_ENV=staging but config/staging.toml does not exist: create it (it may be "
        "empty) or choose one of: prod"
    )


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'http_port = 9000\nmax_parallel_tasks = 3\ntopic_status = "s"\n')
    settings = load_settings(path, environ={**REQUIRED, "TRIBUTARY_HTTP_PORT": "9100"})
    assert settings.http_port == 9100
    assert settings.max_parallel_tasks == 3
    assert settings.topic_status == "s"


def test_env_chooses_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "staging.toml").write_text("http_port = 7000\n")
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={**REQUIRED, "TRIBUTARY_ENV": "staging"})
    assert settings.env == "staging"
    assert settings.http_port == 7000


def test_a_missing_required_setting_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"TRIBUTARY_KAFKA_BOOTSTRAP_SERVERS": "k"})
    assert "'database_url' is required" in str(caught.value)
    assert "TRIBUTARY_DATABASE_URL" in str(caught.value)


def test_a_wrong_value_names_the_variable_and_the_value() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={**REQUIRED, "TRIBUTARY_HTTP_PORT": "eighty"})
    message = str(caught.value)
    assert "'http_port'" in message
    assert "TRIBUTARY_HTTP_PORT" in message
    assert "'eighty'" in message


def test_a_bad_database_url_is_refused() -> None:
    env = {**REQUIRED, "TRIBUTARY_DATABASE_URL": "mysql://x"}
    with pytest.raises(ConfigError, match=r"postgresql://"):
        load_settings(environ=env)


def test_unknown_keys_in_the_file_get_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "http_prot = 1\n")
    with pytest.raises(
        ConfigError, match=r"unknown setting 'http_prot' \(did you mean 'http_port'\?\)"
    ):
        load_settings(path, environ=REQUIRED)


def test_unknown_environment_variables_are_refused() -> None:
    env = {**REQUIRED, "TRIBUTARY_HTTP_PROT": "1"}
    with pytest.raises(ConfigError, match=r"TRIBUTARY_HTTP_PROT.*did you mean TRIBUTARY_HTTP_PORT"):
        load_settings(environ=env)


def test_secrets_are_refused_in_files(tmp_path: Path) -> None:
    path = write(tmp_path, 'kafka_sasl_password = "hunter2"\n')
    with pytest.raises(ConfigError, match=r"secret.*TRIBUTARY_KAFKA_SASL_PASSWORD"):
        load_settings(path, environ=REQUIRED)


def test_secrets_from_the_environment_are_hidden_in_repr() -> None:
    env = {
        **REQUIRED,
        "TRIBUTARY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "TRIBUTARY_KAFKA_SASL_MECHANISM": "PLAIN",
        "TRIBUTARY_KAFKA_SASL_PASSWORD": "hunter2",
    }
    settings = load_settings(environ=env)
    assert "hunter2" not in repr(settings)
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == "hunter2"


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "http_port = \n")
    with pytest.raises(ConfigError, match=r"settings.toml: not valid TOML"):
        load_settings(path, environ=REQUIRED)


def test_an_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not exist"):
        load_settings(tmp_path / "nope.toml", environ=REQUIRED)


def test_the_shipped_files_are_valid() -> None:
    root = Path(__file__).resolve().parents[2] / "config"
    shipped = sorted(path.name for path in root.glob("*.toml"))
    assert {"dev.toml", "prod.toml"} <= set(shipped), shipped
    for name in shipped:
        load_settings(root / name, environ=REQUIRED)


def test_the_configuration_doc_lists_every_setting() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    assert settings_reference() in doc, (
        "regenerate the table with service.config.settings_reference()"
    )


def test_a_wrong_value_never_shows_a_password_or_a_secret() -> None:
    environ = {
        **REQUIRED,
        "TRIBUTARY_DATABASE_URL": "mysql://bob:hunter2@db/x",
        "TRIBUTARY_ALERT_SINKS": "[]",
        "TRIBUTARY_KAFKA_SASL_PASSWORD": "",
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={**environ, "TRIBUTARY_HTTP_PORT": "-1"})
    text = str(caught.value)
    assert "hunter2" not in text
    assert "got 'mysql://bob:***@db/x'" in text
    assert "setting 'http_port'" in text


def test_alert_links_open_the_dashboards_pages_unless_set(tmp_path: Path) -> None:
    path = write(tmp_path, "http_port = 9000\n")
    settings = load_settings(path, environ=REQUIRED)
    assert settings.alert_links() == (
        "http://127.0.0.1:9000/runs/{run_id}",
        "http://127.0.0.1:9000/runs/{run_id}/tasks/{task_id}",
    )
    public = load_settings(
        path,
        environ={
            **REQUIRED,
            "TRIBUTARY_API_URL": "https://tributary.example.com/",
            "TRIBUTARY_ALERT_LOGS_URL_TEMPLATE": "https://logs.example.com/?q={trace_id}",
        },
    )
    assert public.alert_links() == (
        "https://tributary.example.com/runs/{run_id}",
        "https://logs.example.com/?q={trace_id}",
    )


def test_kafka_security_settings_the_protocol_would_not_use_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            environ={
                **REQUIRED,
                "TRIBUTARY_KAFKA_SASL_MECHANISM": "PLAIN",
                "TRIBUTARY_KAFKA_SASL_PASSWORD": "hunter2-secret",
            }
        )
    assert str(caught.value) == (
        "invalid configuration:\n  kafka_sasl_mechanism, kafka_sasl_password set, but "
        "kafka_security_protocol is PLAINTEXT, which does not use them: choose SSL, "
        "SASL_PLAINTEXT or SASL_SSL, or unset them"
    )  # and never the password
    with pytest.raises(ConfigError, match="SASL_SSL needs kafka_sasl_mechanism"):
        load_settings(environ={**REQUIRED, "TRIBUTARY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})
    with pytest.raises(ConfigError, match="kafka_ssl_certfile and kafka_ssl_keyfile go together"):
        load_settings(
            environ={
                **REQUIRED,
                "TRIBUTARY_KAFKA_SECURITY_PROTOCOL": "SSL",
                "TRIBUTARY_KAFKA_SSL_CERTFILE": "/etc/tributary/client.pem",
            }
        )
    tls = load_settings(
        environ={
            **REQUIRED,
            "TRIBUTARY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "TRIBUTARY_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "TRIBUTARY_KAFKA_SASL_USERNAME": "tributary",
            "TRIBUTARY_KAFKA_SASL_PASSWORD": "hunter2-secret",
        }
    )
    from service.bus.kafka import client_options

    options = client_options(tls)
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["ssl_context"].verify_mode.name == "CERT_REQUIRED"
