"""Settings: defaults, then the TOML file, then GLIMPSE_* variables, then flags."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from glimpse import config


def test_defaults_need_nothing() -> None:
    settings = config.load(environ={})
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 9292, 0)
    assert settings.processes >= 1  # one per CPU core
    assert settings.database.startswith("sqlite:///") and settings.database.endswith("glimpse.db")
    assert "qcow2" in settings.disk_formats and "bare" in settings.container_formats


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    path = tmp_path / "glimpse.toml"
    path.write_text('port = 1000\nworkers = 3\ndisk_formats = ["raw", "qcow2"]\n'
                    'data_dir = "/srv/images"\n')
    settings = config.load(path, environ={"GLIMPSE_PORT": "2000"}, overrides={"workers": 5})
    assert settings.port == 2000  # env beats file
    assert settings.workers == 5  # flags beat everything
    assert settings.disk_formats == ("raw", "qcow2")
    assert settings.data_dir == "/srv/images"


def test_config_file_from_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("image_size_cap = 1024\n")
    assert config.load(environ={"GLIMPSE_CONFIG": str(path)}).image_size_cap == 1024


def test_comma_separated_lists_from_env() -> None:
    settings = config.load(environ={"GLIMPSE_CONTAINER_FORMATS": "bare, ovf"})
    assert settings.container_formats == ("bare", "ovf")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"GLIMPSE_PORT": "eighty"}, "port"),
        ({"GLIMPSE_WORKERS": "-1"}, "workers"),
        ({"GLIMPSE_HASHING_ALGORITHM": "crc0"}, "hashing_algorithm"),
        ({"GLIMPSE_UPLOAD_STALE_AFTER": "1", "GLIMPSE_UPLOAD_HEARTBEAT_INTERVAL": "5"},
         "upload_stale_after"),
        # Values that passed before and only failed later, at the first upload or request:
        ({"GLIMPSE_HASHING_ALGORITHM": "shake_128"}, "hashing_algorithm: .*length"),
        ({"GLIMPSE_HASHING_ALGORITHM": "shake_256"}, "hashing_algorithm"),
        ({"GLIMPSE_LOG_LEVEL": "loud"}, "log_level: unknown level 'loud'"),
        ({"GLIMPSE_LOG_LEVEL": "warn"}, "log_level"),  # logging knows it, uvicorn does not
        ({"GLIMPSE_DATABASE_URL": "not a url"}, "database_url: cannot parse"),
        ({"GLIMPSE_DATABASE_URL": "nosuchdb://host/db"}, "database_url: unknown database"),
        ({"GLIMPSE_DATABASE_URL": "postgresql+nosuchdriver://h/db"}, "database_url"),
        ({"GLIMPSE_DATABASE_URL": "mysql+mysqldb://root@127.0.0.1/glimpse"},
         "database_url: the driver for 'mysql\\+mysqldb' is not installed"),
        ({"GLIMPSE_HOST": "no-such-host.invalid"}, "host: cannot resolve 'no-such-host.invalid'"),
        ({"GLIMPSE_PORT": "65536"}, "port: must be at most 65535"),
        ({"GLIMPSE_IMAGE_PROPERTY_QUOTA": "-1"}, "image_property_quota: must be 0 or more"),
        ({"GLIMPSE_IMAGE_TAG_QUOTA": "-5"}, "image_tag_quota"),
        ({"GLIMPSE_IMAGE_SIZE_CAP": "-1"}, "image_size_cap: must be positive"),
        ({"GLIMPSE_MAX_REQUEST_BODY_SIZE": "0"}, "max_request_body_size"),
        ({"GLIMPSE_MAX_REQUEST_LINE": "0"}, "max_request_line: must be positive"),
        ({"GLIMPSE_MAX_HEADER_LINE": "-1"}, "max_header_line"),
        ({"GLIMPSE_MAX_HEADER_SIZE": "0"}, "max_header_size"),
        ({"GLIMPSE_MAX_HEADER_COUNT": "0"}, "max_header_count"),
        ({"GLIMPSE_DISK_FORMATS": ""}, "disk_formats: must name at least one format"),
        ({"GLIMPSE_CONTAINER_FORMATS": " , "}, "container_formats"),
        ({"GLIMPSE_UPLOAD_HEARTBEAT_INTERVAL": "nan"}, "upload_heartbeat_interval"),
        ({"GLIMPSE_UPLOAD_STALE_AFTER": "inf"}, "upload_stale_after"),
        ({"GLIMPSE_WRITE_RETRY_TIMEOUT": "0"}, "write_retry_timeout"),
        ({"GLIMPSE_CLEANUP_INTERVAL": "-1"}, "cleanup_interval"),
        ({"GLIMPSE_DEFAULT_PROJECT": " "}, "default_project: must not be empty"),
        ({"GLIMPSE_PUBLIC_ENDPOINT": "glance.example.com"}, "public_endpoint"),
        ({"GLIMPSE_WORKER_SELF_REFERENCE_URL": "10.0.0.5:9292"}, "worker_self_reference_url"),
    ],
)
def test_bad_values_fail_loudly(environ: dict[str, str], message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.load(environ=environ)


def test_toml_values_of_the_wrong_kind_fail(tmp_path: Path) -> None:
    path = tmp_path / "kinds.toml"
    for line, name in (('host = ["a", "b"]', "host"), ("upload_stale_after = true",
                                                       "upload_stale_after")):
        path.write_text(line + "\n")
        with pytest.raises(config.ConfigError, match=name):
            config.load(path, environ={})


def test_good_values_pass() -> None:
    settings = config.load(environ={
        "GLIMPSE_LOG_LEVEL": "WARNING", "GLIMPSE_HASHING_ALGORITHM": "sha256",
        "GLIMPSE_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1/glimpse",
        "GLIMPSE_HOST": "localhost", "GLIMPSE_IMAGE_TAG_QUOTA": "0",
        "GLIMPSE_PUBLIC_ENDPOINT": "https://images.example.com:9292/",
        "GLIMPSE_MAX_HEADER_LINE": "8190",
    })
    assert settings.log_level == "warning"  # uvicorn wants lower case
    assert settings.image_tag_quota == 0
    assert settings.max_header_line == 8190


@pytest.mark.parametrize(("setting", "value", "start"), [
    ("hashing_algorithm", "shake_128", "hashing_algorithm: "),
    ("data_dir", "{tmp}/a-file/data", "data_dir: cannot create "),
])
def test_serve_refuses_a_bad_setting_with_one_line(tmp_path: Path, setting: str, value: str,
                                                   start: str) -> None:
    (tmp_path / "a-file").write_text("")
    env = {**os.environ, "GLIMPSE_DATA_DIR": str(tmp_path / "data"),
           f"GLIMPSE_{setting.upper()}": value.format(tmp=tmp_path)}
    done = subprocess.run([sys.executable, "-m", "glimpse", "serve", "--port", "1"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("glimpse: configuration error: " + start)
    assert not (tmp_path / "data").exists()  # refused before touching anything


def test_unknown_file_keys_and_broken_files_fail(tmp_path: Path) -> None:
    unknown = tmp_path / "u.toml"
    unknown.write_text("prot = 1\n")
    with pytest.raises(config.ConfigError, match="unknown setting 'prot'"):
        config.load(unknown, environ={})
    broken = tmp_path / "b.toml"
    broken.write_text("port = \n")
    with pytest.raises(config.ConfigError, match=r"b\.toml"):
        config.load(broken, environ={})
    with pytest.raises(config.ConfigError, match=r"missing\.toml"):
        config.load(tmp_path / "missing.toml", environ={})


def test_help_lists_every_setting() -> None:
    text = config.describe()
    for name in ("data_dir", "GLIMPSE_IMAGE_SIZE_CAP", "upload_stale_after", "max_header_line",
                 "GLIMPSE_MAX_REQUEST_LINE", "max_header_size", "max_header_count"):
        assert name in text
