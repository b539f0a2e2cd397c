"""The exchange simulator: a Coinbase Advanced Trade-compatible WebSocket server on localhost.

The market model (:mod:`.model`), the server (:mod:`.server`), replay of recordings
(:mod:`.replay`) and fault injection (:mod:`.faults`).  Tests and ``mktpred demo`` use it as::

    with SimulatedExchange(products=["BTC-USD"], rate=200, faults=[parse_fault("drop:after=100")]) as sim:
        ...connect to sim.url, then compare with sim.connections() and sim.fault_log
"""

from mktpred.simulate.faults import FAULT_KINDS, FaultEvent, FaultSpec, parse_fault
from mktpred.simulate.server import ConnectionLog, SimulatedExchange

__all__ = ["FAULT_KINDS", "ConnectionLog", "FaultEvent", "FaultSpec", "SimulatedExchange", "parse_fault"]
