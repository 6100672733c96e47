"""Operations: metrics, health, tracing and lifecycle logs, each a middleware on the worker seam."""
