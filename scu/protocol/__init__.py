"""The protocol core: everything scukit knows about DICOM networking, written once and
shared by the SCU, the mock SCP and the scenario format. Sans-IO: no sockets, no
threads, no clocks.

* :mod:`.uids`: the UID rule, transfer syntax and SOP class names, storage SOP classes;
* :mod:`.ae`: the AE title rule;
* :mod:`.status`: DIMSE status codes, their categories, names and meanings;
* :mod:`.acse`: A-ASSOCIATE-RJ and A-ABORT values and their words;
* :mod:`.pdu`: Upper Layer PDUs and items, encoded and decoded;
* :mod:`.dimse`: command sets, encoded and decoded;
* :mod:`.stream`: the incoming byte stream decoded incrementally, within limits;
* :mod:`.requestor`: the association requestor's state machine (the SCU side).
"""
