"""What the tests and the benches share: wrappers of the real processes both start (not product code).

``instance``: free loopback ports, an instance ``ddns init`` makes, ``ddns
serve`` in a thread, HTTP and DNS clients; ``cluster``: web and publisher
nodes as processes; ``pgserver``: a PostgreSQL in a temp dir; ``kdc``: an MIT
KDC; ``gssclient``: GSS-TSIG initiators; ``hostile``: raw HTTP bytes and
slowloris connections; ``secondary``: a secondary named; ``processes``:
ending one.

Neither tests/ nor bench/ imports the other; both import this package (the
tests through pytest.ini's ``pythonpath``, where tests/conftest.py and
tests/pgserver.py re-export these names for the fixtures and the test modules;
the benches through the repository root on their path). setup.py installs
only ``ddns``, so this is not shipped.
"""
