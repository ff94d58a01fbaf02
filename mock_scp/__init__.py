"""mock_scp: an in-process, configurable DICOM Storage SCP for testing senders.

>>> from mock_scp import MockScp
>>> with MockScp(ae_title="PACS") as scp:      # doctest: +SKIP
...     scp.on_store(nth=2).fail("out-of-resources", comment="disk full")
...     scp.on_store(sop_class_uid="CTImageStorage").stall(0.5)   # then the next rule
...     scp.reject_associations(result="transient", source="provider-presentation",
...                             reason="temporary-congestion", times=1)
...     ...  # point any SCU at scp.addr
...     scp.check()   # server errors, unmet expect counts, SCU violations

Rules (first match wins; default 0x0000): ``accept``, ``respond(status, comment)``,
``warn``, ``fail``, ``stall(seconds)`` and ``slow_read(bytes_per_second)`` (modifiers:
the next matching rule answers), ``abort(during_dataset=False)``,
``disconnect(rst=False)``, ``garbage(data=None)``. Statuses and reject values take
numbers or the names in :data:`STATUS_NAMES` / :data:`REJECT_RESULTS` /
:data:`REJECT_SOURCES` / :data:`REJECT_REASONS`.

Journal: :attr:`MockScp.received` (:class:`ReceivedStore`, dataset kept raw and decoded
on demand), :attr:`MockScp.associations` (:class:`AssociationRecord`),
:attr:`MockScp.violations` (:class:`Violation`), :attr:`MockScp.errors`.
"""

from typing import TYPE_CHECKING, Any

from scu.protocol.acse import REJECT_REASONS, REJECT_RESULTS, REJECT_SOURCES
from scu.protocol.status import STATUS_NAMES

from .errors import MockScpError, OrderError
from .journal import AssociationRecord, ReceivedStore, Violation, ViolationKind
from .rules import Reply, Rule, RuleBuilder, StoreContent, StoreRequest
from .server import MockScp, RejectRule

if TYPE_CHECKING:
    from .plugin import DicomFileFactory, MockScpFactory


def __getattr__(name: str) -> Any:
    # The fixture types live in the pytest plugin: imported only when asked for, so that
    # using the mock without pytest does not import pytest.
    if name in ("DicomFileFactory", "MockScpFactory"):
        from . import plugin

        return getattr(plugin, name)
    raise AttributeError(f"module 'mock_scp' has no attribute {name!r}")


__all__ = [
    "REJECT_REASONS",
    "REJECT_RESULTS",
    "REJECT_SOURCES",
    "STATUS_NAMES",
    "AssociationRecord",
    "DicomFileFactory",
    "MockScp",
    "MockScpError",
    "MockScpFactory",
    "OrderError",
    "ReceivedStore",
    "RejectRule",
    "Reply",
    "Rule",
    "RuleBuilder",
    "StoreContent",
    "StoreRequest",
    "Violation",
    "ViolationKind",
]
