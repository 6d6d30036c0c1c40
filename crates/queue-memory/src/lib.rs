//! The embedded broker (being written).
