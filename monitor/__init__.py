"""Watching the streams beyond their messages: metrics, alerts, history."""
