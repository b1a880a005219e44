"""Network impairment between fleet and core (issue #12): namespace + veth topology, netem, partitions.

``Topology`` (the core's namespace and its fleet and cloud links) -> ``NetControl`` (impair, cut, heal, all
recorded) ; ``NetworkStand`` puts a reference core with a cloud link behind it. ``Impairment.parse`` is the
spelling of ``--impair``.
"""

from __future__ import annotations

from harness.net.control import NetControl, NetEvent
from harness.net.impair import Impairment
from harness.net.topology import Link, Topology

__all__ = ["Impairment", "Link", "NetControl", "NetEvent", "Topology"]
