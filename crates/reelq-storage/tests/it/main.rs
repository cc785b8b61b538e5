//! Integration tests for the video store on a real directory.

mod local;
mod s3;
