"""`python -m ffmpeg_mcp`: the MCP server (see server.py)."""

from .server import main

main()
