"""The board: a live page of the fleet in the browser, a second face of the daemon's core."""

from .app import Board, ssl_context
from .fleet import Fleet
from .reasons import Reasons

__all__ = ["Board", "Fleet", "Reasons", "ssl_context"]
