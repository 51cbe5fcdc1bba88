"""The interop harness: a test client following the interop-runner contract, and a matrix runner."""
