"""Signatures and time: RFC 3161 time-stamp authority (``signing.tsa``), its clock check
(``signing.clock``) and its lean WSGI front end (``signing.tsa_wsgi``).

Imports only core, hsm, policies (OID constants) and ca's read-only API (``ca.status``,
``ca.context``): keys are reached through the hsm signer interface, never as key material.
"""
