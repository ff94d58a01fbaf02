"""Command templates for external senders: every scu setting has a placeholder, values are
quoted, whole-second timeouts scale the mock's timing, and the program is named."""

from __future__ import annotations

import os
import shlex
import stat
import sys
from pathlib import Path

import pytest

import scenarios
from scenarios.command import (
    PLACEHOLDERS,
    SETTING_PLACEHOLDERS,
    CommandTemplate,
    describe_program,
    needed_settings,
)
from scenarios.expectations import SCU_SETTINGS
from scenarios.model import ScuConfig


def scenario(tmp_path: Path, scu: str = "", scp: str = "") -> scenarios.Scenario:
    text = (
        "name: t\ndescription: x\n"
        + (f"scp:\n{scp}" if scp else "")
        + (f"scu:\n{scu}" if scu else "")
        + "files:\n  - generate: {count: 1, seed: 1}\nexpect:\n  total: 1\n"
    )
    path = tmp_path / "t.yaml"
    path.write_text(text, encoding="utf-8")
    return scenarios.load(path)


def render(template: str, sc: scenarios.Scenario, files: list[Path] | None = None) -> list[str]:
    t = CommandTemplate(template)
    cmd = t.render(t.plan(sc), host="127.0.0.1", port=11112, files=files or [], folder=None)
    return shlex.split(cmd)


def test_every_scu_setting_has_a_placeholder() -> None:
    assert set(SETTING_PLACEHOLDERS.values()) == set(ScuConfig.model_fields) == set(SCU_SETTINGS)
    for place in ("host", "port", "addr", "files", "dir"):
        assert place in PLACEHOLDERS


def test_settings_render_the_scenario_values_or_store_scu_defaults(tmp_path: Path) -> None:
    sc = scenario(
        tmp_path,
        scu="  calling_ae_title: CT 1\n  max_pdu_length: 4096\n  concurrency: 3\n"
        "  transfer_syntax: RLELossless\n  never_transcode: true\n",
    )
    argv = render(
        "s {calling_ae} {called_ae} {max_pdu} {concurrency} {transfer_syntax} "
        "{never_transcode} {fail_fast} {dimse_timeout} {acse_timeout} {network_timeout} "
        "{connect_timeout} {addr}",
        sc,
    )
    assert argv == [
        "s", "CT 1", "MOCK-SCP", "4096", "3", "1.2.840.10008.1.2.5", "true", "false",
        "30", "30", "60", "10", "127.0.0.1:11112",
    ]  # fmt: skip


def test_prefix_form_renders_flags_and_optional_values(tmp_path: Path) -> None:
    plain = scenario(tmp_path)
    template = "s {never_transcode:--never-transcode} {transfer_syntax:--ts=} {max_pdu:-pdu=}"
    assert render(template, plain) == ["s", "-pdu=16384"]
    forced = scenario(tmp_path, scu="  never_transcode: true\n  transfer_syntax: JPEGBaseline\n")
    assert render(template, forced) == [
        "s", "--never-transcode", "--ts=1.2.840.10008.1.2.4.50", "-pdu=16384"
    ]  # fmt: skip


def test_files_and_values_are_quoted_and_shell_braces_left_alone(tmp_path: Path) -> None:
    sc = scenario(tmp_path)
    files = [Path("/tmp/a b.dcm"), Path("/tmp/c'd.dcm"), Path("/tmp/a b.dcm")]
    cmd_t = CommandTemplate("send ${HOME} {other} {json: 1} {files}")
    cmd = cmd_t.render(cmd_t.plan(sc), host="::1", port=1, files=files, folder=None)
    assert "${HOME} {other} {json: 1}" in cmd
    assert shlex.split(cmd)[-3:] == ["/tmp/a b.dcm", "/tmp/c'd.dcm", "/tmp/a b.dcm"]


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("{dimse_timout}", "{dimse_timeout}"),
        ("{calling_aet}", "{calling_ae}"),
        ("{file}", "{files}"),
    ],
)
def test_a_misspelt_placeholder_is_refused_with_a_suggestion(typo: str, meant: str) -> None:
    with pytest.raises(ValueError, match=rf"unknown placeholder \{typo}; did you mean \{meant}"):
        CommandTemplate(f"storescu {typo} {{host}} {{port}}")


def test_whole_second_timeouts_round_up_and_scale_the_mock(tmp_path: Path) -> None:
    sc = scenarios.load("dimse-stall")  # stall 1.5 s against a 0.5 s DIMSE timeout
    template = CommandTemplate("s -td {dimse_timeout} {files}")
    plan = template.plan(sc)
    assert plan.values["dimse_timeout"] == "1"
    assert plan.scale == 2.0
    # The stall stays three times the timeout the sender got, and the time limit grows.
    assert plan.scenario.scp.rules[0].stall == 3.0
    assert plan.scenario.timeout == sc.timeout * 2
    assert plan.scenario.source == sc.source
    # A command without the placeholder gets no scaling: its sender waits the stall out.
    assert CommandTemplate("s {files}").plan(sc).scale == 1.0


def test_not_carried_settings_are_those_the_scenario_needs(tmp_path: Path) -> None:
    sc = scenario(
        tmp_path,
        scu="  dimse_timeout: 2\n  verbose: true\n",
        scp="  require_called_ae_title: true\n  require_calling_ae_titles: [A]\n",
    )
    # verbose changes no outcome; the AE titles matter because the mock checks them.
    assert needed_settings(sc) == {"dimse_timeout", "called_ae_title", "calling_ae_title"}
    plan = CommandTemplate("s {called_ae} {files}").plan(sc)
    assert plan.not_carried == ("calling_ae_title", "dimse_timeout")


def test_describe_program_names_native_and_missing_programs() -> None:
    # Variable assignments before the program are skipped, as the shell does.
    native = describe_program("TCP_NODELAY=1 true {files}")
    assert native.startswith(("/usr/bin/true", "/bin/true")) and "native executable" in native
    assert "not found" in describe_program("no-such-sender-xyz {files}")
    assert "a shell line" in describe_program("true | cat")


def test_describe_program_tells_pynetdicom_storescu_from_dcmtk(tmp_path: Path) -> None:
    # A console script like the one pip installs for pynetdicom, first on PATH.
    script = tmp_path / "storescu"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nfrom pynetdicom.apps.storescu.storescu import main\n"
        "sys.exit(main())\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    env = {"PATH": f"{tmp_path}{os.pathsep}/usr/bin"}
    text = describe_program("storescu -aec {called_ae} {host} {port} {files}", env=env)
    assert text.startswith(str(script))
    assert "Python console script for pynetdicom.apps.storescu.storescu:main" in text
    assert "not DCMTK's (use /usr/bin/storescu for DCMTK)" in text


def test_describe_program_names_an_interpreter_script(tmp_path: Path) -> None:
    script = tmp_path / "sender.py"
    script.write_text("print('x')\n")
    text = describe_program(f"{sys.executable} {script} {{files}}")
    assert f"running {script}" in text
    assert "running module pynetdicom" in describe_program(f"{sys.executable} -m pynetdicom x")
