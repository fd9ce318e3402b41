"""Fakes for the I/O seams, served for real on 127.0.0.1 (the SDKs are never patched)."""
