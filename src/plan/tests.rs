//! The plan matrix (issue 10).
