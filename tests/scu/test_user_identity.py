"""User Identity Negotiation (PS3.7 D.3.3.7): ``StoreScu(user_identity=...)``,
``echo(..., user_identity=...)`` and ``preflight()`` against
``MockScp(require_user_identity=...)`` (a mapping username -> passcode, or a callable
on the identity returning whether it is accepted, or the server response bytes).

A good identity is accepted (and answered when a response was asked for); a bad one is
rejected permanently and never retried; the mock journals what was presented, and no
output, on either side, shows a passcode or a token."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from mock_scp import MockScp
from mock_scp.report import format_journal, journal_dict
from scu import AssociationRejected, StoreScu, UserIdentity, echo
from tests.support.scu_helpers import FAST, SCP_AE, write_series

PASSWORD = "pw-Zq8#only-in-this-test"
JWT = b"eyJhbGciOi.jwt-9f8e7d-secret.sig"
KERBEROS = b"\x01\x02kerberos-ticket-5a5a\xff"
SAML = b"<saml:Assertion>saml-secret-77</saml:Assertion>"
SECRETS = (PASSWORD.encode(), JWT, KERBEROS, b"kerberos-ticket-5a5a", SAML)
SERVER_TOKEN = b"server-response-token-31"

pytest_plugins = ["pytester"]


def identity_check(identity: UserIdentity) -> bool | bytes:
    """What the mock accepts besides alice: the three tokens above (the JWT answered
    with a server token)."""
    if identity.kind == 5:
        return SERVER_TOKEN if identity.primary == JWT else False
    return (identity.kind, identity.primary) in ((3, KERBEROS), (4, SAML))


@pytest.fixture
def pacs() -> Iterator[MockScp]:
    """Only alice, with her passcode, or bob with any passcode (or none)."""
    with MockScp(ae_title=SCP_AE, require_user_identity={"alice": PASSWORD, "bob": None}) as scp:
        yield scp


@pytest.fixture
def token_pacs() -> Iterator[MockScp]:
    with MockScp(ae_title=SCP_AE, require_user_identity=identity_check) as scp:
        yield scp


def sender(
    scp: MockScp, tmp_path: Path, identity: UserIdentity | None, **options: object
) -> StoreScu:
    settings = {"called_ae_title": SCP_AE, **FAST, **options}
    scu = StoreScu(scp.addr, user_identity=identity, **settings)  # type: ignore[arg-type]
    for path in write_series(tmp_path, 2):
        scu.add_file(path)
    return scu


def assert_no_secret(*texts: str | bytes) -> None:
    for text in texts:
        data = text.encode("utf-8", "replace") if isinstance(text, str) else text
        for secret in SECRETS:
            assert secret not in data, f"a secret shows in {text[:200]!r}"
        assert PASSWORD.encode("unicode_escape") not in data


GOOD = {
    "username-and-passcode": UserIdentity.username("alice", PASSWORD),
    "any-passcode": UserIdentity.username("bob", "whatever"),
    "username-only": UserIdentity.username("bob"),
}


@pytest.mark.parametrize("name", list(GOOD))
def test_a_good_identity_is_accepted(pacs: MockScp, tmp_path: Path, name: str) -> None:
    identity = GOOD[name]
    result = sender(pacs, tmp_path, identity).send()
    assert result.successful == 2
    answer = echo(pacs.addr, user_identity=identity, **FAST)
    assert answer.status == 0
    assert answer.user_identity_response == b""  # asked for: an empty one for a username
    pacs.wait_idle(5)
    assert [a.ended for a in pacs.associations] == ["released", "released"]
    for record in pacs.associations:
        presented = record.user_identity
        assert presented is not None
        assert (presented.kind, presented.primary) == (identity.kind, identity.primary)
        assert presented.secondary == identity.secondary
        assert presented.positive_response_requested


def test_no_response_unless_asked(pacs: MockScp) -> None:
    identity = UserIdentity.username("alice", PASSWORD, positive_response=False)
    answer = echo(pacs.addr, user_identity=identity, **FAST)
    assert answer.status == 0 and answer.user_identity_response is None
    pacs.wait_idle(5)
    presented = pacs.associations[0].user_identity
    assert presented is not None and not presented.positive_response_requested


TOKENS = {"jwt": JWT, "kerberos": KERBEROS, "saml": SAML}


@pytest.mark.parametrize("kind", list(TOKENS))
def test_tokens_are_accepted_and_answered(token_pacs: MockScp, tmp_path: Path, kind: str) -> None:
    identity = UserIdentity.token(kind, TOKENS[kind])
    assert sender(token_pacs, tmp_path, identity).send().successful == 2
    answer = echo(token_pacs.addr, user_identity=identity, **FAST)
    assert answer.user_identity_response == (SERVER_TOKEN if kind == "jwt" else b"")
    assert SERVER_TOKEN not in repr(answer).encode()
    token_pacs.wait_idle(5)
    presented = token_pacs.associations[0].user_identity
    assert presented is not None
    assert presented.kind == {"kerberos": 3, "saml": 4, "jwt": 5}[kind]
    assert presented.primary == TOKENS[kind]


BAD = {
    "wrong-passcode": UserIdentity.username("alice", "not-the-passcode"),
    "no-passcode": UserIdentity.username("alice"),
    "unknown-user": UserIdentity.username("mallory", PASSWORD),
    "a-token-where-a-username-is-wanted": UserIdentity.token("jwt", JWT),
    "no-identity": None,
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_identity_is_rejected_permanently_and_not_retried(
    pacs: MockScp, tmp_path: Path, name: str
) -> None:
    scu = sender(pacs, tmp_path, BAD[name], retries=3, retry_backoff=0.01)
    with pytest.raises(AssociationRejected) as caught:
        scu.send()
    rejection = caught.value.rejection
    assert rejection.result == 1 and not caught.value.transient  # rejected-permanent
    assert "rejected" in str(caught.value) and "rejected-permanent" in rejection.description
    result = caught.value.result
    assert result is not None and result.failed == 2 and result.successful == 0
    with pytest.raises(AssociationRejected):
        echo(pacs.addr, user_identity=BAD[name], **FAST)
    with pytest.raises(AssociationRejected):
        scu.preflight()
    pacs.wait_idle(5)
    assert [a.ended for a in pacs.associations] == ["rejected"] * 3  # once each, no retry
    assert not pacs.received


def test_the_rejection_of_an_identity_names_the_acse_as_its_source(
    pacs: MockScp, tmp_path: Path
) -> None:
    scu = sender(pacs, tmp_path, UserIdentity.username("alice", "wrong"))
    with pytest.raises(AssociationRejected) as caught:
        scu.send()
    rejection = caught.value.rejection
    assert (rejection.result, rejection.source, rejection.reason) == (1, 2, 1)


def test_a_callable_that_refuses(token_pacs: MockScp, tmp_path: Path) -> None:
    with pytest.raises(AssociationRejected) as caught:
        sender(token_pacs, tmp_path, UserIdentity.token("jwt", b"forged")).send()
    assert caught.value.rejection.result == 1


def test_preflight_with_an_identity(pacs: MockScp, tmp_path: Path) -> None:
    scu = sender(pacs, tmp_path, UserIdentity.username("alice", PASSWORD))
    assert [item.verdict for item in scu.preflight()] == ["accept", "accept"]
    pacs.wait_idle(5)
    assert [a.ended for a in pacs.associations] == ["released"]
    assert pacs.associations[0].user_identity == scu.user_identity


def test_every_association_presents_the_identity(pacs: MockScp, tmp_path: Path) -> None:
    """After an A-ABORT (re-association) and with concurrency, each A-ASSOCIATE-RQ
    carries the identity."""
    identity = UserIdentity.username("alice", PASSWORD)
    pacs.on_store(nth=1, times=1).abort()  # the 2nd file goes on a new association
    assert sender(pacs, tmp_path, identity).send().successful == 1
    files = write_series(tmp_path, 9)
    # Each store held a moment, so that each of the three workers takes an entry (and
    # opens an association) before the others have sent the whole queue.
    pacs.on_store().stall(0.1)
    several = StoreScu(
        pacs.addr, called_ae_title=SCP_AE, user_identity=identity, concurrency=3, **FAST
    )
    for path in files:
        several.add_file(path)
    assert several.send().successful == 9
    pacs.wait_idle(5)
    assert [a.ended for a in pacs.associations[:2]] == ["aborted", "released"]
    assert len(pacs.associations) == 5
    assert all(a.user_identity == identity for a in pacs.associations)


def test_no_output_shows_a_secret(
    pacs: MockScp, token_pacs: MockScp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The username is journalled; passcodes and tokens appear in no repr, journal
    text, JSON, exception, result or verbose log, on the SCU's side or the mock's."""
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    good = UserIdentity.username("alice", PASSWORD)
    scu = sender(pacs, tmp_path, good, verbose=True)
    result = scu.send()
    texts += [repr(good), str(good), repr(scu), repr(scu.endpoint), repr(result)]
    texts.append(json.dumps(result.to_dict()))
    with pytest.raises(AssociationRejected) as caught:
        sender(pacs, tmp_path, UserIdentity.username("mallory", PASSWORD), verbose=True).send()
    texts += [str(caught.value), repr(caught.value), repr(caught.value.result)]
    for kind, token in TOKENS.items():
        identity = UserIdentity.token(kind, token)
        texts += [repr(identity), repr(echo(token_pacs.addr, user_identity=identity, **FAST))]
    for scp in (pacs, token_pacs):
        scp.wait_idle(5)
        texts += [repr(scp), format_journal(scp), json.dumps(journal_dict(scp), default=str)]
        texts += [repr(record) for record in scp.associations]
    texts += [record.getMessage() for record in caplog.records]
    assert_no_secret(*texts)
    # what was presented is journalled, secrets as <redacted>
    journal = format_journal(pacs)
    assert "user identity: username and passcode 'alice'" in journal
    assert "'mallory'" in journal and "<redacted>" in journal
    first = journal_dict(pacs)["associations"][0]["user_identity"]
    assert first == {
        "type": 2,
        "kind": "username and passcode",
        "username": "alice",
        "secret": "<redacted>",
        "secret_length": len(PASSWORD),
        "positive_response_requested": True,
    }
    assert "alice" in repr(pacs.associations[0])
    token_entry = journal_dict(token_pacs)["associations"][0]["user_identity"]
    assert token_entry["username"] is None and token_entry["secret"] == "<redacted>"


def test_the_plugins_journal_file_shows_no_secret(pytester: pytest.Pytester) -> None:
    """``pytest --mock-scp-journal DIR`` writes a failing test's journal as JSON, and
    the report shows it as text: the username is there, the passcode is not."""
    pytester.makepyfile(
        f"""
        import pytest
        from scu import UserIdentity

        @pytest.fixture
        def mock_scp_options():
            return {{"require_user_identity": {{"alice": {PASSWORD!r}}}}}

        @pytest.fixture
        def store_scu_options():
            return {{"user_identity": UserIdentity.username("alice", {PASSWORD!r})}}

        def test_fails_after_sending(mock_scp, store_scu, dicom_file_factory):
            store_scu.add_file(dicom_file_factory(count=1)[0])
            assert store_scu.send().successful == 1
            assert False, "fail, so that the journal is written"
        """
    )
    folder = pytester.path / "journals"
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--timeout=60", f"--mock-scp-journal={folder}"
    )
    result.assert_outcomes(failed=1)
    written = [path.read_text() for path in folder.rglob("*.json")]
    assert written, "no journal was written"
    assert any('"username": "alice"' in text for text in written)
    output = result.stdout.str() + result.stderr.str()
    assert "alice" in output
    assert_no_secret(output, *written)


@pytest.mark.parametrize(
    "value", ["alice:secret", b"token", ("alice", "secret"), {"user": "alice"}]
)
def test_user_identity_must_be_a_user_identity(value: object) -> None:
    with pytest.raises(ValueError, match="user_identity") as caught:
        StoreScu("127.0.0.1:104", user_identity=value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="user_identity"):
        echo("127.0.0.1:104", user_identity=value)  # type: ignore[arg-type]
    assert_no_secret(str(caught.value))


def test_user_identity_constructors_check_their_input() -> None:
    with pytest.raises(ValueError, match="username"):
        UserIdentity.username("")
    with pytest.raises(ValueError, match="kind"):
        UserIdentity.token("oauth", JWT)
    with pytest.raises(ValueError, match="jwt"):
        UserIdentity.token("jwt", b"")
    assert UserIdentity.username("u", "p").kind == 2
    assert UserIdentity.username("u").kind == 1
    assert UserIdentity.token("kerberos", KERBEROS).kind == 3


@pytest.mark.parametrize("value", [42, "alice", ["alice"], b"x"])
def test_mock_require_user_identity_is_checked(value: object) -> None:
    with pytest.raises(ValueError, match="require_user_identity"):
        MockScp(require_user_identity=value)  # type: ignore[arg-type]
