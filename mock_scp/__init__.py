"""mock_scp: an in-process, configurable DICOM Storage SCP for testing senders.

>>> from mock_scp import MockScp
>>> with MockScp(ae_title="PACS") as scp:      # doctest: +SKIP
...     scp.on_store(nth=2).fail("out-of-resources")
...     ...  # point any SCU at scp.addr
...     scp.check()

See :class:`MockScp` for the configuration, rules and journal.
"""

from .errors import MockScpError
from .journal import AssociationRecord, ReceivedStore, Violation, ViolationKind
from .rules import Rule, RuleBuilder, StoreRequest
from .server import MockScp, RejectRule
from .tables import REJECT_REASONS, REJECT_RESULTS, REJECT_SOURCES, STATUS_NAMES

__all__ = [
    "REJECT_REASONS",
    "REJECT_RESULTS",
    "REJECT_SOURCES",
    "STATUS_NAMES",
    "AssociationRecord",
    "MockScp",
    "MockScpError",
    "ReceivedStore",
    "RejectRule",
    "Rule",
    "RuleBuilder",
    "StoreRequest",
    "Violation",
    "ViolationKind",
]
