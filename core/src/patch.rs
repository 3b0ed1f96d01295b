//! The patch engine: `apply`, `matches`, `trim` and `merge`.
