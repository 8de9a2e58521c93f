"""Test doubles speaking real protocols on loopback, for fault injection and overhead benchmarks."""
