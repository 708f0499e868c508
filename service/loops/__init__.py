"""The loops of one service process: each a supervised round of work, woken when work arrives
(``service/supervision.py``)."""
