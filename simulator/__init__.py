"""The simulator behind `kairos simulate`: a journey engine in a box, driving a running Kairos
over HTTP.

Synthetic users arrive every simulated hour, in three segments whose true response to timing,
tone and channel the simulator knows. It asks Kairos for their message, decides who converts
and when (delays within the attribution window), reports the conversions when they happen and
the sends a frequency cap suppressed, and at the end compares what the bandit did with an
oracle that knew the best message per segment and with a uniform split.

It is a client of Kairos's HTTP API and nothing more: it imports nothing from the server's
packages (tests/test_simulator_layer.py), so what it exercises is the contract a real journey
engine would use.

- world.py: the synthetic world (segments, their true rates and factor effects, arrivals,
  conversion delays) and the experiment that tests it;
- client.py: `KairosClient`, JSON over HTTP with a bearer token, and `SimulationError`;
- run.py: `simulate`, the hourly loop, its `Tally`, and the report it prints.

Data flows one way: run.py draws users from world.py, sends them to Kairos through client.py,
and tallies and prints what comes back.
"""
