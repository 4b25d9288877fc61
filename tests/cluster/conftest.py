"""Fixtures for the tests of several servers over PostgreSQL: one throw-away PostgreSQL per test
module (tests/pg.py), and the helpers of the API suite on the import path."""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "api"))
from pg import PostgresCluster  # noqa: E402


@pytest.fixture(scope="module")
def pg():
    c = PostgresCluster().start()
    yield c
    c.cleanup()
