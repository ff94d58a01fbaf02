"""User Identity Negotiation (PS3.7 D.3.3.7) with peers nobody here wrote: DCMTK's
storescu presenting an identity to MockScp(require_user_identity=...), and our StoreScu
presenting one to a pynetdicom SCP that checks it in its ``EVT_USER_ID`` handler.

DCMTK is called by its path (pynetdicom's console scripts shadow ``storescu`` on
PATH); a missing DCMTK fails these tests."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pynetdicom.events import Event

from mock_scp import MockScp, datagen
from scu import AssociationRejected, StoreScu, UserIdentity, echo
from tests.support.pynetdicom_scp import HarnessScp
from tests.support.scu_helpers import FAST, SCP_AE, instance_uid, write_series
from tests.support.tools import dcmtk_env, dcmtk_tool

pytestmark = pytest.mark.interop

PASSWORD = "dcmtk-pw-4711"
JWT = b"header.jwt-payload-interop.signature"
SERVER_TOKEN = b"granted-by-the-scp"


def storescu(
    scp: MockScp, files: list[Path], *identity: str, called: str = SCP_AE
) -> subprocess.CompletedProcess[str]:
    """DCMTK storescu with -d (it then logs the identity negotiation)."""
    command = [
        dcmtk_tool("storescu"), "-d", "-aec", called, *identity,
        "127.0.0.1", str(scp.port), *map(str, files),
    ]  # fmt: skip
    done = subprocess.run(command, env=dcmtk_env(), capture_output=True, text=True, timeout=60)
    assert scp.wait_idle(10)
    return done


@pytest.fixture
def mock() -> Iterator[MockScp]:
    def check(identity: UserIdentity) -> bool | bytes:
        if identity.kind == 5:
            return SERVER_TOKEN if identity.primary == JWT else False
        return (
            identity.kind == 2
            and identity.primary == b"dcmtk"
            and (identity.secondary == PASSWORD.encode())
        )

    with MockScp(ae_title=SCP_AE, require_user_identity=check) as scp:
        yield scp


@pytest.fixture
def one_file(tmp_path: Path) -> Path:
    return datagen.write_file(tmp_path / "ct.dcm", seed=11)


def test_dcmtk_storescu_with_user_and_password_is_accepted(mock: MockScp, one_file: Path) -> None:
    done = storescu(mock, [one_file], "--user", "dcmtk", "--password", PASSWORD, "--pos-response")
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert "Authentication mode 2: Username/Password" in log
    # the mock answered the positive response (empty for a username, PS3.7 D.3.3.7)
    assert "User Identity Negotiation Response:" in log
    assert "Server Response (not dumped) length: 0" in log
    (record,) = mock.associations
    assert record.ended == "released"
    assert record.user_identity is not None
    assert (record.user_identity.kind, record.user_identity.primary) == (2, b"dcmtk")
    assert record.user_identity.secondary == PASSWORD.encode()
    assert record.user_identity.positive_response_requested
    assert [s.sop_instance_uid for s in mock.stored] == [instance_uid(str(one_file))]
    assert PASSWORD not in repr(record) and PASSWORD not in repr(mock)


def test_dcmtk_storescu_without_positive_response(mock: MockScp, one_file: Path) -> None:
    done = storescu(mock, [one_file], "--user", "dcmtk", "--password", PASSWORD)
    assert done.returncode == 0, done.stderr
    assert "User Identity Negotiation Response:  none" in done.stdout + done.stderr
    (record,) = mock.associations
    assert record.user_identity is not None
    assert not record.user_identity.positive_response_requested


@pytest.mark.parametrize(
    "identity",
    [
        ("--user", "dcmtk", "--password", "wrong"),
        ("--user", "intruder", "--password", PASSWORD),
        ("--user", "dcmtk", "--empty-password"),
        (),  # no identity at all
    ],
    ids=["wrong-password", "unknown-user", "empty-password", "none"],
)
def test_dcmtk_storescu_with_a_bad_identity_is_rejected(
    mock: MockScp, one_file: Path, identity: tuple[str, ...]
) -> None:
    done = storescu(mock, [one_file], *identity)
    log = done.stdout + done.stderr
    assert done.returncode != 0, log
    assert "Association Rejected" in log and "Rejected Permanent" in log
    assert [a.ended for a in mock.associations] == ["rejected"]
    assert mock.associations[0].rejection is not None
    assert mock.associations[0].rejection[0] == 1  # rejected-permanent
    assert not mock.received


def test_dcmtk_storescu_with_a_jwt_gets_the_server_token(
    mock: MockScp, one_file: Path, tmp_path: Path
) -> None:
    token = tmp_path / "token.jwt"
    token.write_bytes(JWT)
    done = storescu(mock, [one_file], "--jwt", str(token), "--pos-response")
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert "Authentication mode 5: JWT" in log
    assert f"Server Response (not dumped) length: {len(SERVER_TOKEN)}" in log
    (record,) = mock.associations
    assert record.user_identity is not None and record.user_identity.primary == JWT
    assert JWT.decode() not in repr(record)

    token.write_bytes(b"forged.jwt.token")
    assert storescu(mock, [one_file], "--jwt", str(token)).returncode != 0
    assert mock.associations[-1].ended == "rejected"


# --- our StoreScu to a pynetdicom SCP -------------------------------------------------


class IdentityChecker:
    """pynetdicom's EVT_USER_ID handler: bob with his password, or the JWT (answered
    with a server token); records what each association presented."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, bytes, bytes | None]] = []
        self.lock = threading.Lock()

    def __call__(self, event: Event) -> tuple[bool, bytes | None]:
        kind, primary, secondary = event.user_id_type, event.primary_field, event.secondary_field
        with self.lock:
            self.seen.append((kind, primary, secondary))
        if kind == 2 and primary == b"bob" and secondary == PASSWORD.encode():
            return True, None
        if kind == 5 and primary == JWT:
            return True, SERVER_TOKEN
        return False, None


@pytest.fixture
def pynetdicom_scp() -> Iterator[tuple[HarnessScp, IdentityChecker]]:
    checker = IdentityChecker()
    with HarnessScp(ae_title=SCP_AE, user_identity=checker) as scp:
        yield scp, checker
    scp.check()


def sender(scp: HarnessScp, tmp_path: Path, identity: UserIdentity) -> StoreScu:
    scu = StoreScu(scp.addr, called_ae_title=SCP_AE, user_identity=identity, **FAST)
    for path in write_series(tmp_path, 3):
        scu.add_file(path)
    return scu


def test_store_scu_to_pynetdicom_with_username_and_password(
    pynetdicom_scp: tuple[HarnessScp, IdentityChecker], tmp_path: Path
) -> None:
    scp, checker = pynetdicom_scp
    result = sender(scp, tmp_path, UserIdentity.username("bob", PASSWORD)).send()
    assert result.successful == 3
    assert checker.seen == [(2, b"bob", PASSWORD.encode())]
    assert len(scp.received) == 3


def test_store_scu_to_pynetdicom_with_a_jwt_gets_the_server_token(
    pynetdicom_scp: tuple[HarnessScp, IdentityChecker], tmp_path: Path
) -> None:
    scp, checker = pynetdicom_scp
    identity = UserIdentity.token("jwt", JWT)
    assert sender(scp, tmp_path, identity).send().successful == 3
    answer = echo(scp.addr, called_ae_title=SCP_AE, user_identity=identity, **FAST)
    assert answer.status == 0 and answer.user_identity_response == SERVER_TOKEN
    no_answer = echo(
        scp.addr,
        called_ae_title=SCP_AE,
        user_identity=UserIdentity.token("jwt", JWT, positive_response=False),
        **FAST,
    )
    assert no_answer.user_identity_response is None  # not asked: pynetdicom sends none
    assert [kind for kind, _, _ in checker.seen] == [5, 5, 5]


def test_store_scu_to_pynetdicom_with_a_wrong_password_is_rejected(
    pynetdicom_scp: tuple[HarnessScp, IdentityChecker], tmp_path: Path
) -> None:
    """pynetdicom rejects a refused identity as rejected-transient, source ACSE (its
    own choice): the SCU reports it as it came, and with retries=0 asks once."""
    scp, checker = pynetdicom_scp
    scu = sender(scp, tmp_path, UserIdentity.username("bob", "not-his-password"))
    with pytest.raises(AssociationRejected) as caught:
        scu.send()
    rejection = caught.value.rejection
    assert (rejection.result, rejection.source, rejection.reason) == (2, 2, 1)
    assert "rejected" in str(caught.value)
    assert "not-his-password" not in str(caught.value)
    assert checker.seen == [(2, b"bob", b"not-his-password")]
    assert not scp.received
