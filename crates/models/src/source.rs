//! Model source resolution (being written).
