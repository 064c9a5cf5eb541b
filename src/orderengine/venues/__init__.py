"""Venues: where swaps are quoted and executed.

The `Venue` protocol (venue.py) and its values (values.py); the simulated Raydium and
Meteora (pool.py, simulated.py, raydium.py, meteora.py) with their chain (chain.py); the live
venues (live.py), quoted and built by Jupiter (jupiter.py) and sent over Solana's JSON-RPC
(rpc.py), through HTTP endpoints (endpoint.py), with what the engine agrees to sign
(signable.py) and what a landed swap moved (balances.py); the construction of the venues an
engine routes between (factory.py), and how many connections they keep open
(connections.py).

Nothing is imported here, so that importing the values never drags in the simulation.
"""
