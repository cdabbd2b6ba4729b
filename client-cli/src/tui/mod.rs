//! The full-screen client (issue: terminal client). Built up in steps: the
//! input line first, as plain state tested without a terminal.

pub mod editor;
pub mod state;
pub mod view;
