"""What the tests and the benches share: wrappers of the real processes both start (not product code).

``processes.stop_process`` ends one; ``secondary.SecondaryNamed`` is a secondary named.

Neither tests/ nor bench/ imports the other; both import this package (the
tests through pytest.ini's ``pythonpath``, the benches through the repository
root on their path). setup.py installs only ``ddns``, so this is not shipped.
"""
