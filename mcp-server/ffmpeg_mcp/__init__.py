"""An MCP server for kubeffmpeg: a client of its REST API."""
