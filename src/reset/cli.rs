//! `overlay-reset` (placeholder until the CLI lands in the next commit).
