"""Publishing: the one writer of the zones repository and its parts.

``publisher.Publisher`` is the façade (its docstring holds the lock's rules);
``publish_queue`` feeds it from a queue (group commit); ``zonecache`` and
``zonestate`` hold and read the zones; ``committer`` turns a group of updates
into one commit; ``worktree`` writes the service's files and puts them back;
``bindtarget`` reloads named (or sends it the update) and waits for the
served serial, through ``namedcontrol`` (rndc and DNS; ``memtarget``, an
in-memory named for tests, in its place); ``zonesync`` reconciles with the sources and
the upstream; ``repolock`` is the lock. Nothing here knows a protocol.
"""
