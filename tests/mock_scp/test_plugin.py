"""The pytest plugin, used the way a downstream project would: test files run by pytester.

Each inner session loads the plugin through its ``pytest11`` entry point (scukit is
installed), exactly as in a project that only did ``pip install scukit``.
"""

from __future__ import annotations

import socket

# Imported here so pytester's in-process runs find them in sys.modules instead of
# importing them again for every inner session (it restores sys.modules after each).
import hypothesis  # noqa: F401
import pydicom.pixels  # noqa: F401
import pytest

import mock_scp.datagen  # noqa: F401
import scu  # noqa: F401

pytest_plugins = ["pytester"]

INNER_ARGS = ("-p", "no:cacheprovider", "--timeout=60")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*INNER_ARGS, *args)


def test_fixtures_send_and_journal(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_send(mock_scp, store_scu, dicom_file_factory):
            paths = dicom_file_factory(count=3, sop_class="MRImageStorage")
            for path in paths:
                store_scu.add_file(path)
            result = store_scu.send()
            assert (result.successful, result.failed) == (3, 0)
            assert [r.sop_instance_uid for r in mock_scp.received] == [
                r.sop_instance_uid for r in result.files
            ]
            assert mock_scp.received[0].called_ae_title == mock_scp.ae_title
        """
    )
    run(pytester).assert_outcomes(passed=1)


def test_rules_reach_the_sender(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_warn_and_fail(mock_scp, store_scu, dicom_file_factory):
            mock_scp.on_store(nth=2).warn(0xB000, comment="coerced")
            mock_scp.on_store(nth=3).fail(0xA700)
            for path in dicom_file_factory(count=3):
                store_scu.add_file(path)
            result = store_scu.send()
            assert [f.status for f in result.files] == [0x0000, 0xB000, 0xA700]
            assert (result.successful, result.failed) == (2, 1)
            assert [r.status for r in mock_scp.received] == [0x0000, 0xB000, 0xA700]
        """
    )
    run(pytester).assert_outcomes(passed=1)


def test_unmet_expectation_fails_the_test_with_its_nearest_miss(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_expects_a_fourth_store(mock_scp, store_scu, dicom_file_factory):
            mock_scp.on_store(nth=4, expect=1).fail(0xA700)
            for path in dicom_file_factory(count=3):
                store_scu.add_file(path)
            assert store_scu.send().successful == 3

        def test_next_test_is_clean(mock_scp):
            assert mock_scp.received == []
        """
    )
    result = run(pytester)
    # One outcome per test: a failure, not a pass and an error at teardown.
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*unmet expectation: rule #1 on_store(nth=4).fail(0xA700): expected 1 hit(s), got 0;"
            " 3 stores arrived; nearest: store 3 * missed nth=4 (it was store 3)*",
            "*what the mock SCP saw:*",
            "*association 1: STORE-SCU -> MOCK-SCP *released by the SCU*",
            "*store 3 (message 3): CTImageStorage * -> 0x0000 (success) (accept)*",
        ]
    )
    # The plugin's own frames are hidden, and so is the fixture's source.
    result.stdout.no_fnmatch_line("*def mock_scp(*")
    result.stdout.no_fnmatch_line("*ERROR at teardown*")


def test_met_expectation_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_expects_the_second_store(mock_scp, store_scu, dicom_file_factory):
            mock_scp.on_store(nth=2, expect=1).warn()
            for path in dicom_file_factory(count=3):
                store_scu.add_file(path)
            assert len(store_scu.send().warnings) == 1
        """
    )
    run(pytester).assert_outcomes(passed=1)


def test_error_in_a_server_thread_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def broken(request):
            raise RuntimeError("predicate exploded")

        def test_broken_predicate(mock_scp, store_scu, dicom_file_factory):
            mock_scp.on_store(when=broken).accept()
            store_scu.add_file(dicom_file_factory())
            store_scu.send()  # whatever the SCU saw, the test must not pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*predicate exploded*"])


def test_each_test_starts_from_a_reset_shared_server(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        seen = []

        def test_first(mock_scp, store_scu, dicom_file_factory):
            seen.append(mock_scp.addr)
            mock_scp.on_store().fail(0xA700)  # permanent: must not leak into the next test
            store_scu.add_file(dicom_file_factory())
            assert store_scu.send().failed == 1

        def test_second(mock_scp, store_scu, dicom_file_factory):
            seen.append(mock_scp.addr)
            assert mock_scp.received == [] and mock_scp.associations == []
            store_scu.add_file(dicom_file_factory())
            assert store_scu.send().successful == 1
            assert mock_scp.received[0].nth == 1  # the nth counter restarted

        def test_same_server(mock_scp):
            assert seen == [mock_scp.addr, mock_scp.addr]
        """
    )
    run(pytester).assert_outcomes(passed=3)


def test_overriding_options_configures_the_server(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def mock_scp_options():
            return {"ae_title": "PACS-X", "require_called_ae_title": True}

        @pytest.fixture
        def store_scu_options():
            return {"calling_ae_title": "MY-SCU"}
        """
    )
    pytester.makepyfile(
        """
        import pytest
        from scu import AssociationRejected, StoreScu

        def test_configured(mock_scp, store_scu, dicom_file_factory):
            assert mock_scp.ae_title == "PACS-X"
            store_scu.add_file(dicom_file_factory())
            assert store_scu.send().successful == 1
            assert mock_scp.associations[0].calling_ae_title == "MY-SCU"
            assert mock_scp.associations[0].called_ae_title == "PACS-X"

        def test_wrong_called_ae_is_rejected(mock_scp, dicom_file_factory):
            sender = StoreScu(mock_scp.addr, called_ae_title="SOMEONE-ELSE")
            sender.add_file(dicom_file_factory())
            with pytest.raises(AssociationRejected):
                sender.send()

        @pytest.mark.parametrize("mock_scp_options", [{"ae_title": "PER-TEST"}])
        def test_per_test_override(mock_scp):
            assert mock_scp.ae_title == "PER-TEST"
        """
    )
    run(pytester).assert_outcomes(passed=3)


def test_factory_in_hypothesis_and_servers_stop_at_session_end(
    pytester: pytest.Pytester,
) -> None:
    ports = pytester.path / "ports.txt"
    pytester.makepyfile(
        f"""
        from hypothesis import given, settings, strategies as st
        from scu import StoreScu
        from mock_scp import datagen

        @settings(max_examples=5, deadline=None)
        @given(status=st.sampled_from([0x0000, 0xB000, 0xA700, 0xC000]))
        def test_status_reaches_sender(mock_scp_factory, status):
            scp = mock_scp_factory.shared(ae_title="HYPO")
            scp.reset()
            scp.on_store().respond(status)
            sender = StoreScu(scp.addr, called_ae_title="HYPO")
            sender.add_file_from_memory(datagen.make_bytes(), "one.dcm")
            result = sender.send()
            assert result.files[0].status == status
            scp.check()

        def test_private_server(mock_scp_factory):
            scp = mock_scp_factory(ae_title="PRIVATE")
            assert scp is not mock_scp_factory(ae_title="PRIVATE")
            with open({str(ports)!r}, "w") as out:
                out.write("\\n".join(s.addr for s in mock_scp_factory.servers))
        """
    )
    run(pytester).assert_outcomes(passed=2)
    addrs = ports.read_text().split()
    assert len(addrs) >= 3
    for addr in addrs:
        host, _, port = addr.rpartition(":")
        with pytest.raises(OSError), socket.create_connection((host, int(port)), timeout=2):
            pass


def test_dicom_file_factory_makes_distinct_files(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pydicom

        def test_files(dicom_file_factory, tmp_path):
            one = dicom_file_factory(sop_class="CTImageStorage", transfer_syntax="RLELossless")
            two = dicom_file_factory(sop_class="CTImageStorage", transfer_syntax="RLELossless")
            many = dicom_file_factory(count=4, size=20000)
            assert one.is_file() and tmp_path in one.parents
            assert len(many) == 4 and len({p.parent for p in many}) == 1
            datasets = [pydicom.dcmread(p) for p in [one, two, *many]]
            assert len({ds.SOPInstanceUID for ds in datasets}) == 6
            assert datasets[0].file_meta.TransferSyntaxUID.keyword == "RLELossless"
            assert len(datasets[2].PixelData) >= 20000
        """
    )
    run(pytester).assert_outcomes(passed=1)


def test_any_sender_can_use_the_fixture(pytester: pytest.Pytester) -> None:
    # A downstream team testing its own sender (here plain pynetdicom), not our StoreScu.
    pytester.makepyfile(
        """
        from pynetdicom import AE
        from pynetdicom.sop_class import CTImageStorage
        from mock_scp import datagen

        def test_pynetdicom_sender(mock_scp):
            mock_scp.on_store(nth=1).fail(0xC000, comment="cannot understand")
            ae = AE(ae_title="THEIR-SCU")
            ae.add_requested_context(CTImageStorage)
            host, port = mock_scp.host, mock_scp.port
            assoc = ae.associate(host, port, ae_title=mock_scp.ae_title)
            assert assoc.is_established
            status = assoc.send_c_store(datagen.make_dataset())
            assoc.release()
            assert status.Status == 0xC000
            assert status.ErrorComment == "cannot understand"
            assert mock_scp.received[0].calling_ae_title == "THEIR-SCU"
        """
    )
    run(pytester).assert_outcomes(passed=1)


def test_a_busy_server_does_not_leak_into_the_next_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def mock_scp_idle_timeout():
            return 0.5

        @pytest.fixture
        def store_scu_options():
            return {"dimse_timeout": 0.5}
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.mock_scp(allow_unreleased=True)  # the SCU aborts after its timeout
        def test_sender_gives_up_on_a_stall(mock_scp, store_scu, dicom_file_factory):
            mock_scp.on_store(nth=1).stall(60)
            store_scu.add_file(dicom_file_factory())
            result = store_scu.send()
            assert result.failed == 1 and "dimse_timeout" in result.files[0].error

        def test_next_test_sees_nothing_of_it(mock_scp, store_scu, dicom_file_factory):
            assert mock_scp.wait_idle(0)  # no connection left over from the stall
            store_scu.add_file(dicom_file_factory())
            assert store_scu.send().successful == 1
            assert [r.action for r in mock_scp.received] == ["accept"]
            assert [a.ended for a in mock_scp.associations] == ["released"]
        """
    )
    run(pytester).assert_outcomes(passed=2)
