"""The virtual vehicle (``redstone-vehicle``): a whole vehicle on one machine.

Cloud backend, TBox (``redstone-master``), two domain controllers
(``redstone-sub`` on file-backed A/B slots with a real U-Boot env) and two
legacy ECUs (``redstone-ecusim`` on DoCAN and DoIP), each on its own lab
node, provisioned through the real APIs. Integrators use it to try their
own configs and images against the real processes before hardware exists.

Modules, one concern each: ``netlab`` (nodes and network), ``plan`` (what
the vehicle is; every config file), ``images``, ``cloud`` + ``operator``
(backend and its API), ``imagerepo`` (offline signing), ``subs`` (factory
provisioning, supervisor), ``ecus`` + ``probe`` (UDS simulators), ``tbox``
(the Master daemon), ``journals`` (watching a running daemon's journal),
``report`` (summary table), ``vehicle`` (composition).
"""
