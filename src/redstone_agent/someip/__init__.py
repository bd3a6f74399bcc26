"""The Master↔Sub SOME/IP interface, its payload codec and a swappable binding.

``interface`` and ``messages`` are the single code definition of
``docs/someip.md``; ``binding`` is the small seam another SOME/IP stack plugs
into; ``someipy_binding`` is the default stack; ``client`` is what the Master
uses to drive a Sub.
"""
