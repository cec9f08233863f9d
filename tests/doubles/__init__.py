"""Test doubles: real servers on 127.0.0.1 that follow the documented contracts, error paths included."""
