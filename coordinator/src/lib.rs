//! Cairn node library.
