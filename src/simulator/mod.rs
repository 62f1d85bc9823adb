//! The built-in provider simulator (being built).
