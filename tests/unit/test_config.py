"""Settings: defaults, then the TOML file, then GLIMPSE_* variables, then flags."""

from __future__ import annotations

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
    ],
)
def test_bad_values_fail_loudly(environ: dict[str, str], message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.load(environ=environ)


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
    for name in ("data_dir", "GLIMPSE_IMAGE_SIZE_CAP", "upload_stale_after"):
        assert name in text
