//! The feed-forward block: gated (SwiGLU, GeGLU) or plain (GPT-2), activation as a parameter.

use candle_core::{Tensor, D};

use super::linear::Linear;
use super::norm::LayerInput;
use crate::config::Activation;
use crate::kernels::fused;
use crate::{Result, TensorContext};

pub enum GateUp {
    Separate {
        gate: Linear,
        up: Linear,
    },
    /// Output `[gate | up]` along the feature dim.
    Fused(Linear),
    /// Ungated: `down(act(up(x)))`.
    UpOnly(Linear),
}

impl GateUp {
    /// Separate gate and up projections become one `[gate | up]` projection where
    /// [`Linear::concat_outputs`] can join them; anything else is returned as it is.
    pub(super) fn fused(self) -> Self {
        let GateUp::Separate { gate, up } = self else { return self };
        match Linear::concat_outputs([gate, up]) {
            Ok(gu) => GateUp::Fused(gu),
            Err([gate, up]) => GateUp::Separate { gate, up },
        }
    }
}

pub struct Mlp {
    pub(super) gate_up: GateUp,
    pub(super) down: Linear,
    pub(super) activation: Activation,
}

fn activate(x: &Tensor, a: Activation) -> Result<Tensor> {
    match a {
        Activation::Silu => x.silu(),
        Activation::Gelu => x.gelu_erf(),
        Activation::GeluTanh => x.gelu(),
        Activation::Relu => x.relu(),
    }
    .ctx("activation")
}

impl Mlp {
    /// `x`: (b, seq, hidden) → (b, seq, hidden)
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_in(LayerInput::Normed(x), None)
    }

    /// [`Mlp::forward`] of a layer half's input, plus `residual` when given (added by the down
    /// projection's kernel where it can).
    pub(crate) fn forward_in(&self, input: LayerInput<'_>, residual: Option<&Tensor>) -> Result<Tensor> {
        // The fused gate|up reads the input as it comes (a folded norm inside its GEMV); the
        // other forms read the normalised activations.
        let normed = || input.normed();
        let h = match &self.gate_up {
            GateUp::Separate { gate, up } => {
                let x = &normed()?;
                let (gate, up) = (gate.forward(x)?, up.forward(x)?);
                match self.activation {
                    Activation::Silu => {
                        fused::silu_mul_pair(&gate, &up).or_else(|| crate::cuda::silu_mul_pair(&gate, &up))
                    }
                    _ => None,
                }
                .unwrap_or_else(|| (activate(&gate, self.activation)? * up).ctx("gate * up"))?
            }
            GateUp::Fused(gu) => {
                // Decode-sized rows of a dense `[gate | up]` on a GPU: one GEMV that writes
                // silu(gate) · up.
                let gated = match self.activation {
                    Activation::Silu => gu.silu_gemv(input),
                    _ => None,
                };
                if let Some(h) = gated {
                    return self.down.forward_add(&h?, residual);
                }
                let y = gu.forward_input(input)?;
                let ff = gu.out_features() / 2;
                match self.activation {
                    // One pass over `[gate | up]` on the CPU or CUDA, no split copies.
                    Activation::Silu => fused::silu_mul_fused(&y, ff).or_else(|| crate::cuda::silu_mul_fused(&y, ff)),
                    _ => None,
                }
                .unwrap_or_else(|| {
                    let gate = y.narrow(D::Minus1, 0, ff).ctx("split gate")?;
                    let up = y.narrow(D::Minus1, ff, ff).ctx("split up")?;
                    (activate(&gate, self.activation)? * up).ctx("gate * up")
                })?
            }
            GateUp::UpOnly(up) => activate(&up.forward_input(input)?, self.activation)?,
        };
        self.down.forward_add(&h, residual)
    }
}
