//! The full-screen client: the input line (`editor`), what is shown
//! (`state`) and how it is drawn (`view`) are plain state tested without a
//! terminal; `app` puts them on a real terminal and drives the engine.

pub mod app;
pub mod editor;
pub mod state;
pub mod view;
