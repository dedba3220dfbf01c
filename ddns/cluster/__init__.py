"""Several web nodes and one elected publisher, coordinated through PostgreSQL.

``codec`` turns updates and results into JSON and back (pure), ``changes``
is the changes table (web nodes hand updates over and wait for their outcome,
the active publisher consumes them), ``election`` holds the advisory lock that
makes one publisher active, ``takeover`` brings a newly elected publisher's
clone to the upstream's state and settles rows the upstream already has, and
``roles`` wires them into ``ddns serve --role``.
"""
