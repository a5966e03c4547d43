//! Storage interfaces and adapters.
