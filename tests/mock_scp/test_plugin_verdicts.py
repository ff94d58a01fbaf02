"""The plugin's verdict on a test, seen from a downstream suite run by pytester: what
fails a test (unreleased associations, strict_rules, order, a raising handler), what the
``mock_scp`` marker allows and refuses, and what a failing test shows (one outcome, no
plugin frames, the journal section, ``--mock-scp-journal`` files)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

# Imported here so pytester's in-process runs find them in sys.modules instead of
# importing them again for every inner session (it restores sys.modules after each).
import hypothesis  # noqa: F401
import pydicom.pixels  # noqa: F401
import pynetdicom  # noqa: F401
import pytest

import scu  # noqa: F401

pytest_plugins = ["pytester"]

INNER_ARGS = ("-p", "no:cacheprovider", "--timeout=60")

# What a downstream suite would have in its conftest to end associations in each way
# a sender can: release, abort, drop the connection, or leave it open.
SENDERS = """
import socket
import struct

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from mock_scp import datagen
from scu.protocol import pdu

CT = "1.2.840.10008.5.1.4.1.1.2"
OPEN = []  # sockets a test leaves open on purpose


@pytest.fixture
def mock_scp_idle_timeout():
    return 0.3


def pynetdicom_store(scp, then):
    ae = AE(ae_title="THEIRS")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate(scp.host, scp.port, ae_title=scp.ae_title)
    assert assoc.is_established
    assert assoc.send_c_store(datagen.make_dataset()).Status == 0
    getattr(assoc, then)()


def raw_associate(scp, calling):
    sock = socket.create_connection((scp.host, scp.port), timeout=5)
    request = pdu.AssociateRQ(
        called_ae_title=scp.ae_title,
        calling_ae_title=calling,
        contexts=(pdu.ContextProposal(1, CT, ("1.2.840.10008.1.2.1",)),),
        max_pdu_length=16384,
        implementation_class_uid="1.2.3.4",
    )
    sock.sendall(pdu.encode_associate_rq(request))
    header = sock.recv(6, socket.MSG_WAITALL)
    assert header[0] == 0x02, header  # A-ASSOCIATE-AC
    sock.recv(struct.unpack(">I", header[2:])[0], socket.MSG_WAITALL)
    return sock


def release(scp):
    pynetdicom_store(scp, "release")


def abort(scp):
    pynetdicom_store(scp, "abort")


def drop(scp):
    raw_associate(scp, "DROPPER").close()


def leave_open(scp):
    OPEN.append(raw_associate(scp, "LINGERER"))


SENDS = {"release": release, "abort": abort, "drop": drop, "leave_open": leave_open}
"""

UNRELEASED = {
    "abort": "*not released: association * (THEIRS) aborted: A-ABORT from the SCU*",
    "drop": "*not released: association * (DROPPER) dropped: TCP connection closed by the SCU*",
    "leave_open": "*not released: association * (LINGERER) is still open*",
}


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*INNER_ARGS, *args)


def test_unreleased_associations_fail_the_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(SENDERS)
    pytester.makepyfile(
        """
        import pytest
        from conftest import SENDS

        @pytest.mark.parametrize("how", ["release", "abort", "drop", "leave_open"])
        def test_sender(mock_scp, how):
            SENDS[how](mock_scp)
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=3)  # one outcome each: no teardown errors
    for how, line in UNRELEASED.items():
        result.stdout.fnmatch_lines([f"*_ test_sender[[]{how}[]] _*", line])
    result.stdout.no_fnmatch_line("*ERROR at teardown*")
    result.stdout.no_fnmatch_line("*SCU violation: dropped-connection*")  # said once, above
    result.stdout.fnmatch_lines(
        ["FAILED *test_sender[[]abort[]]*", "FAILED *test_sender[[]drop[]]*"]
    )


def test_the_marker_allows_them(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(SENDERS)
    pytester.makepyfile(
        test_marked_tests="""
        import pytest
        from conftest import SENDS

        @pytest.mark.mock_scp(allow_unreleased=True)
        @pytest.mark.parametrize("how", ["release", "abort", "drop", "leave_open"])
        def test_sender(mock_scp, how):
            SENDS[how](mock_scp)

        @pytest.mark.mock_scp(allow_unreleased=False)
        def test_explicit_default(mock_scp):
            SENDS["abort"](mock_scp)
        """,
        test_marked_module="""
        import pytest
        from conftest import SENDS

        pytestmark = pytest.mark.mock_scp(allow_unreleased=True)

        class TestSender:
            def test_abort(self, mock_scp):
                SENDS["abort"](mock_scp)
                assert mock_scp.wait_idle(5)  # the A-ABORT has reached the mock
                assert mock_scp.associations[0].ended_by == "scu"

            def test_next_test_is_clean(self, mock_scp):
                assert mock_scp.associations == []
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=6, failed=1)
    result.stdout.fnmatch_lines(["FAILED *test_explicit_default*"])


def test_the_marker_allows_no_more_than_unreleased(pytester: pytest.Pytester) -> None:
    # The marker is about the release only: an unmet expectation still fails the test.
    pytester.makeconftest(SENDERS)
    pytester.makepyfile(
        """
        import pytest
        from conftest import SENDS

        @pytest.mark.mock_scp(allow_unreleased=True)
        def test_sender(mock_scp):
            mock_scp.on_store(nth=2, expect=1).accept()
            SENDS["abort"](mock_scp)
        """
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*unmet expectation: rule #1 on_store(nth=2).accept()*"])
    result.stdout.no_fnmatch_line("*not released*")


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        pytest.param(
            "mock_scp(allow_unrelease=True)",
            "@pytest.mark.mock_scp: unknown option 'allow_unrelease' (did you mean "
            "'allow_unreleased'?); it takes allow_unreleased",
            id="typo",
        ),
        pytest.param(
            "mock_scp(True)",
            "@pytest.mark.mock_scp: takes keyword arguments only, got (True,)",
            id="positional",
        ),
        pytest.param(
            "mock_scp(allow_unreleased='yes')",
            "@pytest.mark.mock_scp: allow_unreleased: expected True or False, got 'yes'",
            id="not-a-bool",
        ),
    ],
)
def test_a_wrong_marker_is_an_error(pytester: pytest.Pytester, marker: str, message: str) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.{marker}
        def test_marked(mock_scp):
            raise AssertionError("the body must not run")
        """
    )
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*{re.escape(message).replace(chr(92), '')}*"])
    result.stdout.no_fnmatch_line("*the body must not run*")


def test_mock_scp_options_turn_on_strict_rules(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def mock_scp_options():
            return {"strict_rules": True}

        def test_unplanned_store(mock_scp, store_scu, dicom_file_factory):
            mock_scp.on_store(sop_class_uid="MRImageStorage").accept()
            store_scu.add_file(dicom_file_factory(sop_class="MRImageStorage"))
            store_scu.add_file(dicom_file_factory(sop_class="CTImageStorage"))
            assert store_scu.send().successful == 2

        def test_planned_stores(mock_scp, store_scu, dicom_file_factory):
            mock_scp.on_store().accept()
            store_scu.add_file(dicom_file_factory(sop_class="CTImageStorage"))
            assert store_scu.send().successful == 1
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*SCU violation: unmatched-store (association 1, message 2): store 2 (*) matched "
            "no rule (strict_rules)*"
        ]
    )


def test_out_of_order_and_a_raising_handler_fail_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_report_before_images(mock_scp, store_scu, dicom_file_factory):
            mock_scp.on_store(sop_class_uid="CTImageStorage", ordered=True).accept()
            mock_scp.on_store(sop_class_uid="BasicTextSRStorage", ordered=True).accept()
            store_scu.add_file(dicom_file_factory(sop_class="BasicTextSRStorage"))
            store_scu.add_file(dicom_file_factory(sop_class="CTImageStorage"))
            assert store_scu.send().successful == 2

        def test_handler_raises(mock_scp, store_scu, dicom_file_factory):
            def pacs(store):
                return {"CT": 0}[store.dataset().Modality]

            mock_scp.on_store().respond_with(pacs)
            store_scu.add_file(dicom_file_factory(sop_class="MRImageStorage"))
            assert store_scu.send().files[0].status == 0x0110
        """
    )
    result = run(pytester)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*out of order: store 1 (*) hit ordered rule #2 on_store(sop_class_uid="
            "'BasicTextSRStorage', times=1, ordered=True).accept() before #1 *",
            "*server thread error: KeyError: 'MR' (at *test_out_of_order_and_a_raising_handler*",
        ]
    )


FAILING = """
import pytest

def test_unmet(mock_scp, store_scu, dicom_file_factory):
    mock_scp.on_store(nth=3, expect=1).fail("0xA700")
    store_scu.add_file(dicom_file_factory())
    store_scu.send()

@pytest.mark.parametrize("n", [1, 2])
def test_body_fails(mock_scp, store_scu, dicom_file_factory, n):
    mock_scp.on_store(nth=5, expect=1).accept()  # unmet as well: the body's failure wins
    store_scu.add_file(dicom_file_factory())
    store_scu.send()
    mock_scp.assert_stored(2)

def test_passes(mock_scp, store_scu, dicom_file_factory):
    store_scu.add_file(dicom_file_factory())
    store_scu.send()
"""


def test_a_failing_test_shows_one_outcome_and_the_journal(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_failing=FAILING)
    result = run(pytester, "-rA")
    result.assert_outcomes(passed=1, failed=3)
    output = result.stdout.str()
    # The check's failure, in the test itself; no plugin or fixture source on the way.
    result.stdout.fnmatch_lines(
        [
            "*_ test_unmet _*",
            "E   mock_scp.errors.MockScpError: mock SCP check failed:",
            "*unmet expectation: rule #1 on_store(nth=3).fail(0xA700): expected 1 hit(s), got 0;"
            " 1 store arrived; nearest: store 1 (*) missed nth=3 (it was store 1)",
            "*what the mock SCP saw:*",
            "All traceback entries are hidden.*",
            "*- mock SCP journal -*",
            "  association 1: STORE-SCU -> MOCK-SCP from 127.0.0.1:*, released by the SCU*",
            "    store 1 (message 1): CTImageStorage * -> 0x0000 (success) (accept)",
        ]
    )
    for hidden in (
        "def mock_scp(",
        "def pytest_runtest_call",
        "verdict.check()",
        "__tracebackhide__",
    ):
        assert hidden not in output, hidden
    assert "ERROR at teardown" not in output and " error" not in output.splitlines()[-1]
    # A body that fails shows its own failure (not the unmet rule) and the journal.
    result.stdout.fnmatch_lines(
        [
            "*_ test_body_fails[[]1[]] _*",
            ">       mock_scp.assert_stored(2)",
            "E       mock_scp.errors.MockScpError: assert_stored(2): expected 2, found 1 "
            "(1 answered of 1 received)",
            "*- mock SCP journal -*",
        ]
    )
    body = output.split("_ test_body_fails[1] _")[1].split("_ test_body_fails[2] _")[0]
    assert "unmet expectation" not in body
    # Passing tests get no journal section.
    passes = output.split("PASSED test_failing.py::test_passes")[0].split("= PASSES =")[-1]
    assert "mock SCP journal" not in passes
    assert output.count("- mock SCP journal -") == 3


def test_journal_option_writes_json_per_failing_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_failing=FAILING)
    folder = pytester.path / "journals" / "nested"
    result = run(pytester, "--mock-scp-journal", str(folder))
    result.assert_outcomes(passed=1, failed=3)
    files = sorted(p.name for p in folder.iterdir())
    assert files == [
        "test_failing.py_test_body_fails_1.json",
        "test_failing.py_test_body_fails_2.json",
        "test_failing.py_test_unmet.json",
    ]
    data = json.loads((folder / "test_failing.py_test_unmet.json").read_text())
    assert data["ae_title"] == "MOCK-SCP"
    assert [(a["calling_ae_title"], a["ended"], a["ended_by"]) for a in data["associations"]] == [
        ("STORE-SCU", "released", "scu")
    ]
    assert [(s["nth"], s["status"], s["action"]) for s in data["stores"]] == [(1, 0, "accept")]
    assert data["rules"][0]["rule"] == "#1 on_store(nth=3).fail(0xA700)"
    assert data["rules"][0]["unmet"].endswith("expected 1 hit(s), got 0")
    assert data["unreleased"] == [] and data["violations"] == [] and data["errors"] == []


def test_without_the_option_nothing_is_written(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_failing=FAILING)
    before = set(pytester.path.rglob("*"))
    run(pytester).assert_outcomes(passed=1, failed=3)
    written = {p for p in set(pytester.path.rglob("*")) - before if p.suffix == ".json"}
    assert written == set()


def test_a_marked_open_association_is_waited_for_once(pytester: pytest.Pytester) -> None:
    # The check already waited mock_scp_idle_timeout for the association the SCU left
    # open; teardown stops the server at once instead of waiting as long again.
    pytester.makeconftest(SENDERS.replace("return 0.3", "return 1.5"))
    pytester.makepyfile(
        """
        import time
        import pytest
        from conftest import SENDS

        @pytest.mark.mock_scp(allow_unreleased=True)
        def test_leaves_open(mock_scp):
            SENDS["leave_open"](mock_scp)

        def test_next(mock_scp_factory, mock_scp):
            assert mock_scp.associations == []
            assert len(mock_scp_factory.servers) == 1  # the busy one was stopped
        """
    )
    result = run(pytester, "--durations=0", "--durations-min=0")
    result.assert_outcomes(passed=2)
    durations = re.findall(
        r"^([\d.]+)s (setup|call|teardown) +\S+::test_leaves_open$",
        result.stdout.str(),
        re.MULTILINE,
    )
    timings = {phase: float(seconds) for seconds, phase in durations}
    assert timings["call"] >= 1.5  # the check waited for the open association
    assert timings.get("teardown", 0.0) < 1.0  # and the teardown did not again


def test_each_test_numbers_its_associations_from_one(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("n", [1, 2])
        def test_send(mock_scp, store_scu, dicom_file_factory, n):
            store_scu.add_file(dicom_file_factory())
            assert store_scu.send().successful == 1
            assert [s.nth for s in mock_scp.received] == [1]
            assert [a.id for a in mock_scp.associations] == [1]
            assert mock_scp.received[0].association_id == 1
        """
    )
    run(pytester).assert_outcomes(passed=2)


def test_fixture_types_are_exported_without_importing_pytest_up_front() -> None:
    code = """
import sys
import mock_scp
assert "pytest" not in sys.modules, "importing mock_scp imported pytest"
from mock_scp import DicomFileFactory, MockScpFactory
from mock_scp import plugin
assert (MockScpFactory, DicomFileFactory) == (plugin.MockScpFactory, plugin.DicomFileFactory)
try:
    mock_scp.NoSuchThing
except AttributeError as exc:
    assert "NoSuchThing" in str(exc)
else:
    raise AssertionError("no AttributeError")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_journal_folder_is_where_pytest_was_started(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_moves="""
        import pytest

        LONG = [pytest.param(n, id="x" * 250 + n) for n in ("-a", "-b")]

        def test_changes_directory(mock_scp, monkeypatch, tmp_path):
            monkeypatch.chdir(tmp_path)
            mock_scp.assert_stored()

        @pytest.mark.parametrize("name", LONG)
        def test_long_ids(mock_scp, name):
            mock_scp.assert_stored()
        """
    )
    result = run(pytester, "--mock-scp-journal", "out")
    result.assert_outcomes(failed=3)
    files = sorted(p.name for p in (pytester.path / "out").iterdir())
    assert len(files) == 3 and "test_moves.py_test_changes_directory.json" in files
    long_names = [name for name in files if "long_ids" in name]
    assert len(set(long_names)) == 2 and all(195 <= len(name) <= 200 for name in long_names)
    for name in files:
        assert json.loads((pytester.path / "out" / name).read_text())["stores"] == []
    written = str(pytester.path / "out" / "test_moves.py_test_changes_directory.json")
    result.stdout.fnmatch_lines([f"(written to {written})"])


def test_a_journal_folder_that_is_a_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(mock_scp):\n    pass\n")
    (pytester.path / "taken").write_text("")
    result = run(pytester, "--mock-scp-journal", "taken")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --mock-scp-journal: taken exists and is not a folder"])


def test_a_journal_that_cannot_be_written_does_not_end_the_session(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_blocked="""
        def test_first(mock_scp):
            mock_scp.assert_stored()

        def test_second(mock_scp):
            assert False
        """
    )
    (pytester.path / "out" / "test_blocked.py_test_first.json").mkdir(parents=True)
    result = run(pytester, "--mock-scp-journal", "out")
    result.assert_outcomes(failed=2)  # no INTERNALERROR: the second test ran
    result.stdout.fnmatch_lines(["(not written to */test_blocked.py_test_first.json: *)"])
    assert (pytester.path / "out" / "test_blocked.py_test_second.json").is_file()
