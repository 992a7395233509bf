//! placeholder
pub struct Weights;
