//! Integration tests of the durable workspace.
