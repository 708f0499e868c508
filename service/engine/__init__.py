"""The state machine: states and their moves, the pure decision function, retry math, and
which runs to start. No I/O, no clock, no randomness."""
