"""The fleet console: server-rendered pages under ``/console/`` of ``redstone-cloud serve``
(docs/console.md). ``auth`` holds the sign-in rules without I/O, ``accounts`` keeps users,
sessions and failed sign-ins in the database, ``web`` is the HTTP plumbing, ``pages``
one router per page and ``queries`` the read functions the pages render."""
