"""The user-identity options of ``scukit send``, ``echo`` and ``preflight``, in process
(``scu.cli.main``) against MockScp(require_user_identity=...).

``--user NAME`` takes its passcode from ``--password-file FILE`` or ``$SCUKIT_PASSWORD``,
never from the command line (``--password`` is refused with exit 2); ``--jwt-file``,
``--kerberos-file`` and ``--saml-file`` present a token; ``--no-identity-response`` does
not ask the SCP to confirm. No secret appears in any output, ``-v`` and ``--json``
included."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mock_scp import MockScp
from scu import UserIdentity
from scu.cli import main
from scu.cli.common import PASSWORD_ENV
from tests.support.scu_helpers import write_series

PASSWORD = "cli-pw-Qx7!only-here"
JWT = b"cli.jwt-token-8d8d.sig"
KERBEROS = b"\x05\x04kerberos-cli-ticket\n"  # binary: its last byte is part of it
SAML = b"<saml:Assertion>cli-saml-1234</saml:Assertion>"
SECRETS = (PASSWORD.encode(), JWT, b"kerberos-cli-ticket", SAML)  # printable cores


def accepts(identity: UserIdentity) -> bool:
    return (identity.kind, identity.primary, identity.secondary) in {
        (2, b"alice", PASSWORD.encode()),
        (5, JWT, b""),
        (3, KERBEROS, b""),
        (4, SAML, b""),
    }


@pytest.fixture
def pacs() -> Iterator[MockScp]:
    with MockScp(ae_title="PACS", require_user_identity=accepts) as scp:
        yield scp


@pytest.fixture(autouse=True)
def no_password_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)


@pytest.fixture
def files(tmp_path: Path) -> list[str]:
    return write_series(tmp_path / "study", 2)


def secret_file(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    path.chmod(0o600)
    return str(path)


def run(
    capsys: pytest.CaptureFixture[str], command: str, scp: MockScp, *args: str
) -> tuple[int, str, str]:
    """``scukit COMMAND ADDR ARGS...``; the secrets must be in neither stream."""
    code = main([command, scp.addr, "--called-ae", "PACS", "--acse-timeout", "5", *args])
    out, err = capsys.readouterr()
    for secret in SECRETS:
        text = secret.decode("utf-8", "replace")
        assert text not in out and text not in err, f"a secret shows in the output of {args}"
    return code, out, err


def presented(scp: MockScp) -> list[UserIdentity | None]:
    scp.wait_idle(5)
    return [record.user_identity for record in scp.associations]


@pytest.mark.parametrize("extra", [[], ["-v"], ["--json"]], ids=["plain", "verbose", "json"])
def test_user_with_a_password_file(
    pacs: MockScp,
    files: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
) -> None:
    """The file's final newline is not part of the passcode."""
    password = secret_file(tmp_path, "password", PASSWORD.encode() + b"\n")
    code, out, err = run(
        capsys, "send", pacs, "--user", "alice", "--password-file", password, *extra, *files
    )
    assert code == 0, err
    assert presented(pacs) == [UserIdentity.username("alice", PASSWORD)]
    if extra == ["-v"]:
        assert "A-ASSOCIATE-RQ" in err  # the protocol exchange was logged
    if extra == ["--json"]:
        assert json.loads(out)["successful"] == 2


def test_user_with_the_password_in_the_environment(
    pacs: MockScp,
    files: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    code, _, err = run(capsys, "send", pacs, "--user", "alice", "-v", *files)
    assert code == 0, err
    assert presented(pacs) == [UserIdentity.username("alice", PASSWORD)]


def test_the_password_file_wins_over_the_environment(
    pacs: MockScp,
    files: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password")
    password = secret_file(tmp_path, "password", PASSWORD.encode())
    code, _, err = run(capsys, "send", pacs, "--user", "alice", "--password-file", password, *files)
    assert code == 0, err


@pytest.mark.parametrize("form", ["separate", "joined"])
def test_a_password_on_the_command_line_is_refused(
    pacs: MockScp, files: list[str], capsys: pytest.CaptureFixture[str], form: str
) -> None:
    given = ["--password", PASSWORD] if form == "separate" else [f"--password={PASSWORD}"]
    for extra in ([], ["--json"]):
        code, out, err = run(capsys, "send", pacs, "--user", "alice", *given, *extra, *files)
        assert code == 2
        assert "--password-file" in err and PASSWORD_ENV in err
        if extra:
            assert json.loads(out)["exit_code"] == 2
    assert not pacs.associations  # refused before anything was sent


TOKEN_OPTIONS = {"--jwt-file": (JWT + b"\n", 5, JWT), "--saml-file": (SAML + b"\r\n", 4, SAML),
                 "--kerberos-file": (KERBEROS, 3, KERBEROS)}  # fmt: skip


@pytest.mark.parametrize("option", list(TOKEN_OPTIONS))
def test_token_files(
    pacs: MockScp,
    files: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    option: str,
) -> None:
    """A text token's final newline is not part of it; a Kerberos ticket is binary and
    taken as it is."""
    content, kind, expected = TOKEN_OPTIONS[option]
    token = secret_file(tmp_path, "token", content)
    code, _, err = run(capsys, "send", pacs, option, token, "-v", *files)
    assert code == 0, err
    (identity,) = presented(pacs)
    assert identity is not None
    assert (identity.kind, identity.primary) == (kind, expected)
    assert identity.positive_response_requested


def test_no_identity_response(
    pacs: MockScp, files: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = secret_file(tmp_path, "token", JWT)
    code, _, err = run(capsys, "send", pacs, "--jwt-file", token, "--no-identity-response", *files)
    assert code == 0, err
    (identity,) = presented(pacs)
    assert identity is not None and not identity.positive_response_requested


@pytest.mark.parametrize("extra", [[], ["--json"]], ids=["text", "json"])
def test_a_refused_identity_exits_3(
    pacs: MockScp,
    files: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    code, out, err = run(capsys, "send", pacs, "--user", "mallory", "-v", *extra, *files)
    assert code == 3
    assert "rejected" in err
    if extra:
        data = json.loads(out)
        assert data["rejection"]["result"] == 1 and data["failed"] == 2
    assert [a.ended for a in pacs.associations] == ["rejected"]


def test_echo_and_preflight_present_the_identity(
    pacs: MockScp, files: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    password = secret_file(tmp_path, "password", PASSWORD.encode())
    args = ["--user", "alice", "--password-file", password, "-v"]
    assert run(capsys, "echo", pacs, *args)[0] == 0
    assert run(capsys, "preflight", pacs, *args, *files)[0] == 0
    assert presented(pacs) == [UserIdentity.username("alice", PASSWORD)] * 2
    wrong = secret_file(tmp_path, "wrong", b"wrong-password")
    assert run(capsys, "echo", pacs, "--user", "alice", "--password-file", wrong)[0] == 3
    code, _, err = run(
        capsys, "preflight", pacs, "--user", "alice", "--password-file", wrong, *files
    )
    assert code == 3 and "rejected" in err


ONE_AT_A_TIME = "one user identity at a time"
USAGE_ERRORS = {
    "password-file-without-user": (["--password-file", "{password}"], "needs --user"),
    "two-identities": (["--user", "alice", "--jwt-file", "{token}"], ONE_AT_A_TIME),
    "two-tokens": (["--jwt-file", "{token}", "--saml-file", "{token}"], ONE_AT_A_TIME),
    "missing-password-file": (["--user", "alice", "--password-file", "{missing}"],
                              "No such file or directory"),
    "empty-password-file": (["--user", "alice", "--password-file", "{empty}"], "empty"),
    "non-utf8-password-file": (["--user", "alice", "--password-file", "{latin1}"], "UTF-8"),
    "empty-token-file": (["--jwt-file", "{empty}"], "the file is empty"),
    "empty-username": (["--user", ""], "username"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(USAGE_ERRORS))
def test_usage_errors_exit_2_before_anything_is_sent(
    pacs: MockScp,
    files: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
) -> None:
    paths = {
        "password": secret_file(tmp_path, "password", PASSWORD.encode()),
        "token": secret_file(tmp_path, "token", JWT),
        "missing": str(tmp_path / "missing"),
        "empty": secret_file(tmp_path, "empty", b"\n"),
        "latin1": secret_file(tmp_path, "latin1", "pässwörd".encode("latin-1")),
    }
    template, words = USAGE_ERRORS[case]
    args = [part.format(**paths) for part in template]
    code, _, err = run(capsys, "send", pacs, *args, *files)
    assert code == 2, err
    assert words in err
    assert not pacs.associations
