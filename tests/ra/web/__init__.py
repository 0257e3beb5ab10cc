"""Tests of the RA web pages (ra/web/)."""
