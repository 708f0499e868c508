"""Alerts people act on: rules over committed status events, sinks (Feishu first), sending."""
