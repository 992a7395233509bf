//! Shared server state: the served model, the admission counter that bounds the waiting queue,
//! the metrics, and the draining flag set on shutdown.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prom_engine::{Request, SamplingParams};
use prom_models::chat::ChatTemplate;

use crate::config::{ServedModel, ServerConfig};
use crate::error::{ApiError, Error};
use crate::generate::{Submitted, Watched};
use crate::guard::ServerGuard;
use crate::metrics::{Gauges, Metrics};
use crate::protocol::chat::ModelView;

pub struct State {
    pub model: ServedModel,
    pub template: ChatTemplate,
    pub config: ServerConfig,
    pub metrics: Arc<Metrics>,
    pub admission: Arc<Admission>,
    pub draining: AtomicBool,
    /// Unix seconds when the server started (`created` of `/v1/models`).
    pub started: u64,
    /// The guardrails, when `--guard` gave a rails file.
    pub guard: Option<Arc<ServerGuard>>,
}

pub type AppState = Arc<State>;

impl State {
    pub fn new(model: ServedModel, config: ServerConfig) -> Result<Self, Error> {
        let mut model = model;
        let template = match model.chat_template.take() {
            Some(t) => t,
            None => ChatTemplate::chatml()?,
        };
        let capacity = config.max_num_seqs + config.max_queue;
        if capacity == 0 {
            return Err(Error::Config("--max-num-seqs + --max-queue must be at least 1".into()));
        }
        let guard = match &config.guard {
            Some(g) => Some(Arc::new(ServerGuard::new(Arc::clone(g))?)),
            None => None,
        };
        Ok(Self {
            guard,
            model,
            template,
            admission: Arc::new(Admission { in_flight: AtomicUsize::new(0), capacity }),
            config,
            metrics: Arc::new(Metrics::default()),
            draining: AtomicBool::new(false),
            started: unix_now(),
        })
    }

    pub fn view(&self) -> ModelView<'_> {
        ModelView {
            name: &self.model.name,
            tokenizer: &self.model.tokenizer,
            template: &self.template,
            defaults: &self.model.defaults,
            max_model_len: self.model.engine.info().max_model_len,
        }
    }

    pub fn gauges(&self) -> Gauges {
        Gauges {
            engine: self.model.engine.stats(),
            in_flight: self.admission.in_flight.load(Ordering::Relaxed),
            capacity: self.admission.capacity,
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Admits `prompts.len() × n` sequences (or answers 429) and submits one engine request per
    /// prompt. Nothing is submitted unless everything is accepted: on an error, the requests
    /// already submitted are dropped, which aborts them.
    pub fn submit(
        &self,
        prompts: Vec<Vec<u32>>,
        params: &SamplingParams,
        priority: i32,
    ) -> Result<Submitted, ApiError> {
        let weight = prompts.len() * params.n;
        let cap = self.admission.capacity;
        if weight > cap {
            return Err(ApiError::bad_request(format!(
                "The request asks for {weight} sequences ({} prompts × n = {}), more than the server's capacity of {cap} \
                 (--max-num-seqs + --max-queue)",
                prompts.len(),
                params.n
            )));
        }
        let permit = Admission::acquire(&self.admission, weight)
            .map_err(|in_flight| ApiError::queue_full(in_flight, cap, self.metrics.retry_after_secs()))?;
        let batch = prompts.len();
        let mut streams = Vec::with_capacity(batch);
        for (i, prompt) in prompts.into_iter().enumerate() {
            let len = prompt.len();
            let req = Request { prompt, params: params.clone(), priority };
            let stream = self.model.engine.submit(req).map_err(|e| {
                let mut err = ApiError::from_engine(&e);
                if batch > 1 {
                    err.message = format!("prompt {i}: {}", err.message);
                }
                err
            })?;
            streams.push(Watched::new(i, stream, params.n, len, Arc::clone(&self.metrics)));
        }
        Ok(Submitted { streams, permit })
    }
}

/// Counts sequences admitted and not yet finished; the server never holds more than `capacity`
/// (the engine's running slots plus the waiting queue), so memory stays bounded under overload.
pub struct Admission {
    in_flight: AtomicUsize,
    capacity: usize,
}

impl Admission {
    /// A permit for `weight` sequences, or the current count when they don't fit.
    fn acquire(this: &Arc<Self>, weight: usize) -> Result<Permit, usize> {
        let mut cur = this.in_flight.load(Ordering::Relaxed);
        loop {
            if cur + weight > this.capacity {
                return Err(cur);
            }
            match this.in_flight.compare_exchange_weak(cur, cur + weight, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Ok(Permit { admission: Arc::clone(this), weight }),
                Err(now) => cur = now,
            }
        }
    }
}

/// Returns its sequences to the [`Admission`] count when dropped (request finished or abandoned).
pub struct Permit {
    admission: Arc<Admission>,
    weight: usize,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.in_flight.fetch_sub(self.weight, Ordering::AcqRel);
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_is_bounded_and_permits_release_on_drop() {
        let a = Arc::new(Admission { in_flight: AtomicUsize::new(0), capacity: 3 });
        let p1 = Admission::acquire(&a, 2).unwrap();
        assert_eq!(Admission::acquire(&a, 2).err(), Some(2));
        let p2 = Admission::acquire(&a, 1).unwrap();
        assert_eq!(Admission::acquire(&a, 1).err(), Some(3));
        drop(p1);
        let _p3 = Admission::acquire(&a, 2).unwrap();
        drop(p2);
        assert_eq!(a.in_flight.load(Ordering::Relaxed), 2);
    }
}
