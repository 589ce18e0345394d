"""Clients of the vidsent websocket protocol."""
