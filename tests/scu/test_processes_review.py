"""Worker processes (scu.processes) at their edges: entries handed back by processes
that get no association, a worker process ended while it holds entries under
``fail_fast``, and what the worker processes had already reported when the transfer
ends early. No timing assertions: waits are bounded and only make an order certain.
"""

from __future__ import annotations

import pytest

import scu.processes as processes
from mock_scp import MockScp
from tests.scu.test_processes import forks, queue, scu_for, uid_of
from tests.support.recorder import Recorder

__all__ = ["forks"]

pytestmark = pytest.mark.skipif(
    not processes.processes_available(), reason="worker processes need os.fork (Linux)"
)


@pytest.mark.timeout(60)
def test_every_entry_handed_back_is_sent_by_the_process_that_has_an_association(
    forks: list[int],
) -> None:
    """An SCP that takes one association at a time: the two processes refused hand back
    all they took (their first claims are far larger than later ones) and the process
    that has the association sends everything."""
    with MockScp(max_associations=1) as scp:
        scu = scu_for(scp)
        names = queue(scu, 600)
        rec = Recorder()
        result = scu.send(**rec.callbacks)
        assert scp.wait_idle(5)
        received = {r.sop_instance_uid for r in scp.received}

    assert forks == [3]
    rec.check_invariants(result, names)
    assert result.successful == 600, sorted({o.error or "" for o in result.files if not o.ok})
    assert received == {uid_of(n) for n in range(600)}
