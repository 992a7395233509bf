//! Prometheus engine.
