"""Seeing a cluster work: the master's step observer, process telemetry and stack dumps, the
ObservabilityService and the token-checked HTTP server behind --metrics-port and --dashboard-port.

The metric types and their text format are tensorgrid/metrics.py; the web
dashboard is tensorgrid/dashboard/.
"""
