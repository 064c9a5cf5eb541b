"""Venues: where swaps are quoted and executed.

The `Venue` protocol (venue.py) and its values (values.py); the simulated Raydium and
Meteora (pool.py, simulated.py, raydium.py, meteora.py) with their chain (chain.py); and the
construction of the venues an engine routes between (factory.py).

Nothing is imported here, so that importing the values never drags in the simulation.
"""
