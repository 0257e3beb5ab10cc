"""Signatures and time: PAdES signing and validation of official papers (``signing.pades``,
``signing.pdf_verify``, seals in ``signing.appearance``/``signing.seals``), CMS for any file
(``signing.cms``, envelopes, ESS receipts), and the RFC 3161 time-stamp authority
(``signing.tsa``, its clock check and lean WSGI front end).

Imports only core, hsm, policies and ca's read-only API: keys are reached through the hsm signer
interface, never as key material.
"""
