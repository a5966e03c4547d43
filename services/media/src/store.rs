//! SQL of the media service: stored objects, images and their blobs, review clicks.

pub mod images;
pub mod objects;
pub mod review;

pub use objects::*;
