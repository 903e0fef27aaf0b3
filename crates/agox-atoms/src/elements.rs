//! Element data.
