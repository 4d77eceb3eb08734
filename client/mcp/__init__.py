"""`workerstate mcp`: the daemon's API as Model Context Protocol tools for coding agents.

The MCP SDK is an optional extra (`workerstate[mcp]`), so only the `mcp` command imports this
package, and only when it runs; the rest of the client never needs the SDK.
"""

from .session import serve

__all__ = ["serve"]
