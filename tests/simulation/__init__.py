"""Deterministic simulation of a month of operation (docs/SIMULATION.md).

One ``random.Random(seed)`` decides everything: the schedule's instants, the exchange's outages (some published
late), its clock skew, HTTP faults, database outages, killed runs and the live tail's socket drops and restarts.
One simulated clock (``binance_extractor.clock``, shared with the emulator plus the exchange's skew) is the only
"now"; time jumps from one scheduled instant to the next. The scheduled work calls the library exactly as the DAG
tasks do (``cli.execute`` of the planned argv, the gap filler's ``gapfill`` helpers), and the tail is the real
``stream.tail.Tail`` fed simulated socket messages. At the end every store must equal the exchange's data.

Run one seed: ``python -m tests.simulation run --seed 7``; many: ``python -m tests.simulation soak --seeds 200``.
"""
