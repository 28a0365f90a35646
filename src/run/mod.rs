//! The run pipeline: plan -> check the cloud -> submit (rate-limited) -> poll -> confirm.
