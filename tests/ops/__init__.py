"""Operational tests: the packaged agent under systemd, in containers and Kubernetes, and its ops endpoints."""
