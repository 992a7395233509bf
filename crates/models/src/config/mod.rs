//! placeholder
pub struct ModelConfig;
