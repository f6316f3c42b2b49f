"""The ``mxg`` command: ``--version``, ``-c`` before or after the
subcommand, one line per error with its documented exit status
(docs/operations.md, "Exit statuses"), and what ``config check`` checks
on the host: certificate and key, CA files, directories, the run user."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mxg import __version__, _core
from mxg.cli import build_parser, main
from mxg.cli.exits import CONFIG, ERROR, OK, USAGE
from mxg.config import load_config
from tests.support.certs import self_signed


def _mxg(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MXG_")}
    return subprocess.run(
        [sys.executable, "-m", "mxg", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env,
        check=False,
    )


def test_version_option_and_command_agree(tmp_path: Path) -> None:
    option = _mxg("--version", cwd=tmp_path)
    command = _mxg("version", cwd=tmp_path)
    assert option.returncode == command.returncode == OK
    assert option.stdout == command.stdout == f"mxg {__version__} (engine {_core.__version__})\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["-c", "a.toml", "queue", "list"],
        ["queue", "-c", "a.toml", "list"],
        ["queue", "list", "-c", "a.toml"],
        ["--config", "b.toml", "queue", "list", "--config", "a.toml"],
        ["config", "check", "-c", "a.toml"],
    ],
)
def test_config_option_before_or_after_the_subcommand(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).config == "a.toml"


def test_without_config_option_nothing_is_set() -> None:
    assert build_parser().parse_args(["queue", "list"]).config is None


def test_config_check_honours_the_config_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[limits]\nmax_recipients = 5\n")
    good = tmp_path / "good.toml"
    good.write_text(f'[data]\ndirectory = "{tmp_path / "data"}"\n')
    assert main(["-c", str(bad), "config", "check"]) == CONFIG
    assert main(["config", "check", "-c", str(good)]) == OK
    assert f"{good}: OK" in capsys.readouterr().out
    # A file named after "check" is the one checked.
    assert main(["-c", str(good), "config", "check", str(bad)]) == CONFIG


def test_configuration_errors_are_one_line_each_with_status_78(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[limits]\nmax_recipients = 5\n[server]\nlisten = ["nowhere"]\n')
    for args in (["-c", str(bad), "run"], ["config", "check", str(bad)]):
        out = _mxg(*args, cwd=tmp_path)
        assert out.returncode == CONFIG, out.stderr
        lines = out.stderr.splitlines()
        assert len(lines) == 2, out.stderr
        assert all(line.startswith(f"mxg: {bad}: ") for line in lines)
        assert "limits.max_recipients" in out.stderr and "server.listen" in out.stderr


def test_a_missing_file_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    missing = _mxg("-c", str(tmp_path / "none.toml"), "run", cwd=tmp_path)
    assert missing.returncode == CONFIG
    assert (
        missing.stderr == f"mxg: {tmp_path / 'none.toml'}: cannot read: No such file or directory\n"
    )
    message = _mxg("classify", str(tmp_path / "none.eml"), "--to", "a@b.example", cwd=tmp_path)
    assert message.returncode == ERROR
    assert message.stderr == f"mxg: {tmp_path / 'none.eml'}: No such file or directory\n"


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    out = _mxg("queue", "nonsense", cwd=tmp_path)
    assert out.returncode == USAGE and "usage:" in out.stderr


def test_check_without_a_domain_is_a_usage_error(tmp_path: Path) -> None:
    # docs/operations.md: a wrong command line exits 2, with one line.
    out = _mxg("check", cwd=tmp_path)
    assert (out.returncode, out.stderr) == (
        USAGE,
        "mxg: check: name at least one domain, or --file FILE\n",
    )
    empty = tmp_path / "domains.txt"
    empty.write_text("# partners\n\n   \n")
    out = _mxg("check", "--file", str(empty), cwd=tmp_path)
    assert (out.returncode, out.stderr) == (USAGE, f"mxg: check: --file {empty} lists no domain\n")
    out = _mxg("check", "--file", "", cwd=tmp_path)
    assert out.returncode == USAGE and out.stderr.count("\n") == 1
    assert "--file needs a file name" in out.stderr
    stdin = subprocess.run(
        [sys.executable, "-m", "mxg", "check", "--file", "-"],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert (stdin.returncode, stdin.stderr) == (
        USAGE,
        "mxg: check: --file standard input lists no domain\n",
    )


def _check(tmp_path: Path, toml: str) -> tuple[int, list[str]]:
    cfg = tmp_path / "mxg.toml"
    cfg.write_text(f'[data]\ndirectory = "{tmp_path / "data"}"\n' + toml)
    out = _mxg("config", "check", str(cfg), cwd=tmp_path)
    assert "Traceback" not in out.stderr
    return out.returncode, [line.removeprefix(f"mxg: {cfg}: ") for line in out.stderr.splitlines()]


def test_config_check_checks_the_web_and_metrics_certificates(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path / "a", "mxg.example")
    _, other_key = self_signed(tmp_path / "b", "other.example")
    code, lines = _check(
        tmp_path,
        f'[web]\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
        f'[metrics]\ntls_cert = "{cert}"\ntls_key = "{other_key}"\n',
    )
    assert code == CONFIG
    assert lines == [f"metrics.tls_key: {other_key} is not the key of the certificate in {cert}"]


def test_config_check_finds_a_missing_or_mismatched_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path / "a", "mxg.example")
    other_cert, other_key = self_signed(tmp_path / "b", "other.example")
    code, lines = _check(tmp_path, f'[server]\ntls_cert = "{cert}"\ntls_key = "{key}"\n')
    assert (code, lines) == (OK, [])
    code, lines = _check(tmp_path, f'[server]\ntls_cert = "{cert}"\ntls_key = "{other_key}"\n')
    assert code == CONFIG
    assert lines == [f"server.tls_key: {other_key} is not the key of the certificate in {cert}"]
    code, lines = _check(
        tmp_path, f'[server]\ntls_cert = "{tmp_path}/gone.pem"\ntls_key = "{key}"\n'
    )
    assert (code, lines) == (
        CONFIG,
        [f"server.tls_cert: {tmp_path}/gone.pem: No such file or directory"],
    )
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    code, lines = _check(tmp_path, f'[server]\ntls_cert = "{garbage}"\ntls_key = "{key}"\n')
    assert code == CONFIG and len(lines) == 1
    assert lines[0].startswith(f"server.tls_cert: {garbage} and {key} do not load")
    assert other_cert.exists()


def test_config_check_finds_a_bad_ca_file(tmp_path: Path) -> None:
    ca, _ = self_signed(tmp_path, "ca.example")
    assert _check(tmp_path, f'[delivery]\nca_file = "{ca}"\n') == (OK, [])
    missing = tmp_path / "missing-ca.pem"
    code, lines = _check(tmp_path, f'[delivery]\nca_file = "{missing}"\n')
    assert (code, lines) == (CONFIG, [f"delivery.ca_file: {missing}: No such file or directory"])
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    code, lines = _check(tmp_path, f'[delivery]\nca_file = "{empty}"\n')
    assert code == CONFIG and lines[0].startswith(f"delivery.ca_file: {empty} holds no usable")


def test_config_check_finds_a_bad_web_client_ca(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "mxg.example")
    web = f'[web]\nlisten = ["127.0.0.1:8443"]\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
    assert _check(tmp_path, web + f'client_ca = "{cert}"\n') == (OK, [])
    empty = tmp_path / "empty-ca.pem"
    empty.write_text("")
    code, lines = _check(tmp_path, web + f'client_ca = "{empty}"\n')
    assert code == CONFIG and lines[0].startswith(f"web.client_ca: {empty} holds no usable")
    # Client certificates need HTTPS, and certificate entries a CA.
    code, lines = _check(tmp_path, f'[web]\nclient_ca = "{cert}"\n')
    assert code == CONFIG and "client_ca needs HTTPS" in lines[0]
    code, lines = _check(tmp_path, web + '[[web.certificate]]\nsubject = "CN=x"\nrole = "read"\n')
    assert code == CONFIG and "certificate entries need client_ca" in lines[0]


def test_config_check_names_a_bad_web_token(tmp_path: Path) -> None:
    def token(name: str, role: str, sha256: str) -> str:
        return f'[[web.token]]\nname = "{name}"\nrole = "{role}"\nsha256 = "{sha256}"\n'

    for toml, why in (
        (token("ops", "admin", "mxg_secret"), "web.token.0.sha256"),
        (token("o p", "admin", "b" * 64), "web.token.0.name"),
        (token("ops", "root", "b" * 64), "web.token.0.role"),
        (token("ops", "admin", "a" * 64) + token("ops", "read", "b" * 64), "the same name"),
        (token("ops", "admin", "a" * 64) + token("bob", "read", "A" * 64), "the same sha256"),
    ):
        code, lines = _check(tmp_path, toml)
        assert code == CONFIG and why in lines[0], lines


def test_config_check_finds_log_and_data_directories_and_the_run_user(tmp_path: Path) -> None:
    code, lines = _check(
        tmp_path,
        f'[log]\nfile = "{tmp_path}/no-such-dir/mxg.log"\n[run]\nuser = "no-such-user-mxg"\n',
    )
    assert code == CONFIG
    assert lines == [
        "run.user: no such user 'no-such-user-mxg'",
        f"log.file: directory {tmp_path}/no-such-dir does not exist",
    ]
    assert _check(tmp_path, f'[log]\nfile = "{tmp_path}/mxg.log"\n') == (OK, [])
    not_a_dir = tmp_path / "plain"
    not_a_dir.write_text("")
    cfg = tmp_path / "mxg.toml"
    cfg.write_text(f'[data]\ndirectory = "{not_a_dir}"\n')
    out = _mxg("config", "check", str(cfg), cwd=tmp_path)
    assert out.returncode == CONFIG
    assert out.stderr == f"mxg: {cfg}: data.directory: {not_a_dir} is not a directory\n"


def test_config_check_finds_a_directory_the_relay_cannot_write(tmp_path: Path) -> None:
    """As a user, for this process; as root, for run.user (nobody)."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500 if os.geteuid() else 0o700)
    toml = f'[log]\nfile = "{locked}/mxg.log"\n'
    by = ""
    if os.geteuid() == 0:
        toml += '[run]\nuser = "nobody"\n'
        by = " by run.user nobody"
    code, lines = _check(tmp_path, toml)
    assert (code, lines) == (CONFIG, [f"log.file: directory {locked} cannot be written{by}"])


def test_the_shipped_configurations_load() -> None:
    """packaging/mxg.toml (the FHS install) and docker/mxg.toml."""
    root = Path(__file__).resolve().parent.parent
    installed = load_config(root / "packaging" / "mxg.toml", environ={})
    assert installed.data.directory == Path("/var/lib/mxg")
    assert installed.log.file is None and installed.run.user == ""
    container = load_config(root / "docker" / "mxg.toml", environ={})
    assert container.dns.trust_ad and container.dns.nameservers == ["172.30.53.53"]


def test_config_check_finds_an_unusable_tlsrpt_dkim_key(tmp_path: Path) -> None:
    _, ec_key = self_signed(tmp_path / "a", "mxg.example")  # an EC key: DKIM signs with RSA
    named = '[server]\nhostname = "mxg.example"\n[tlsrpt]\ndkim_selector = "s"\n'
    code, lines = _check(tmp_path, f'{named}dkim_key = "{ec_key}"\n')
    assert code == CONFIG
    assert lines == [f"tlsrpt.dkim_key: {ec_key}: not an RSA key (DKIM signs with RSA here)"]
    missing = tmp_path / "dkim.pem"
    code, lines = _check(tmp_path, f'{named}dkim_key = "{missing}"\n')
    assert (code, lines) == (CONFIG, [f"tlsrpt.dkim_key: {missing}: No such file or directory"])
    code, lines = _check(tmp_path, '[tlsrpt]\ndkim_selector = "s"\n')
    assert code == CONFIG and "dkim_key and dkim_selector go together" in lines[0]


def test_tlsrpt_mail_needs_a_fully_qualified_sender_and_dkim_domain(tmp_path: Path) -> None:
    # A host without a real name: the contact (postmaster@<hostname>) and
    # d= would both be "localhost"; report mail is refused at load.
    key = tmp_path / "dkim.pem"
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    tlsrpt = f'[tlsrpt]\ndkim_selector = "s1"\ndkim_key = "{key}"\n'
    code, lines = _check(tmp_path, f'[server]\nhostname = "localhost"\n{tlsrpt}')
    assert (code, lines) == (
        CONFIG,
        [
            "server.hostname: 'localhost' is not a fully qualified domain name, but TLS reports "
            "sent by mail would use it as the report's sender; set server.hostname (or "
            "tlsrpt.contact and tlsrpt.dkim_domain)"
        ],
    )
    # Start refuses it the same way, before it touches anything.
    started = _mxg("-c", str(tmp_path / "mxg.toml"), "run", cwd=tmp_path)
    assert started.returncode == CONFIG and "Traceback" not in started.stderr
    assert started.stderr.endswith(
        "set server.hostname (or tlsrpt.contact and tlsrpt.dkim_domain)\n"
    )
    assert started.stderr.count("\n") == 1 and not (tmp_path / "data").exists()
    code, lines = _check(tmp_path, f'[server]\nhostname = "gw"\n{tlsrpt}contact = "rpt@gw"\n')
    assert code == CONFIG and lines[0].startswith("tlsrpt.contact: 'gw' is not a fully")
    named = f'[server]\nhostname = "gw"\n{tlsrpt}contact = "rpt@gw.example"\n'
    code, lines = _check(tmp_path, f'{named}dkim_domain = "example"\n')
    assert code == CONFIG and lines[0].startswith("tlsrpt.dkim_domain: 'example' is not")
    assert "as the DKIM domain (d=); set tlsrpt.dkim_domain" in lines[0]
    # Named domains pass, and so does a nameless host that sends no mail.
    assert _check(tmp_path, named) == (OK, [])
    assert _check(tmp_path, f'[server]\nhostname = "mxg.example"\n{tlsrpt}') == (OK, [])
    off = f'[server]\nhostname = "localhost"\n{tlsrpt}enabled = false\n'
    assert _check(tmp_path, off) == (OK, [])
    https_only = '[server]\nhostname = "localhost"\n[tlsrpt]\nenabled = true\n'
    assert _check(tmp_path, https_only) == (OK, [])
