//! HTTP: `/healthz`, `/status` (JSON) and `/metrics` (Prometheus text).
