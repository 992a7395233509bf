//! The collectives a tensor-parallel decoder needs, behind one trait: a sum over the ranks after
//! each row-parallel projection, and a gather of the vocabulary-parallel logits.
//!
//! Three worlds implement it: [`SingleRank`] (one rank, every collective the identity),
//! [`LocalWorld`] (ranks are threads of one process exchanging tensors in memory: the CPU
//! tests, and `--tensor-parallel-size` on the CPU) and, with the `cuda` feature, NCCL
//! (`parallel::nccl`, one GPU per rank).

use std::sync::{Arc, Condvar, Mutex};

use candle_core::Tensor;

use crate::{Error, Result, TensorContext};

/// One rank's handle on its world. Every rank calls every collective in the same order with
/// tensors of the same shape and dtype (the decoder's lockstep guarantees it).
pub trait Communicator: Send + Sync {
    fn rank(&self) -> usize;
    fn world_size(&self) -> usize;
    /// The element-wise sum of every rank's `x`; each rank gets the same tensor.
    fn all_reduce_sum(&self, x: &Tensor) -> Result<Tensor>;
    /// Every rank's `x` (one shape everywhere) concatenated in rank order along dim 0.
    fn all_gather(&self, x: &Tensor) -> Result<Tensor>;
    /// Called by a rank that stops before its next collective (an error mid-step), so the others
    /// fail instead of waiting for it forever. Best effort: NCCL offers no such thing.
    fn abort(&self) {}
}

/// A world of one: nothing to exchange.
pub struct SingleRank;

impl Communicator for SingleRank {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.clone())
    }
    fn all_gather(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.clone())
    }
}

/// Ranks as threads of one process. A collective is a rendezvous: each rank posts its tensor,
/// the last to arrive opens the round, each reads every rank's tensor and the last to read closes
/// it. Each rank then combines the tensors itself, in rank order, so every rank computes the
/// identical result (the same sum in the same order).
pub struct LocalWorld {
    rank: usize,
    shared: Arc<Rendezvous>,
}

struct Rendezvous {
    world: usize,
    state: Mutex<Round>,
    changed: Condvar,
}

#[derive(Default)]
struct Round {
    posted: Vec<Option<Tensor>>,
    arrived: usize,
    /// Ranks that have taken the full round's tensors; the next round opens once all have.
    read: usize,
    /// Rounds completed: a waiting rank knows its round is full when this moves.
    generation: u64,
    /// True while a full round is being read (no rank may post the next round's tensor yet).
    draining: bool,
    aborted: bool,
}

impl LocalWorld {
    /// The `world` ranks' handles, rank 0 first; give each to its own thread.
    pub fn new(world: usize) -> Vec<LocalWorld> {
        let shared = Arc::new(Rendezvous {
            world,
            state: Mutex::new(Round { posted: vec![None; world], ..Round::default() }),
            changed: Condvar::new(),
        });
        (0..world).map(|rank| LocalWorld { rank, shared: Arc::clone(&shared) }).collect()
    }

    /// Posts `x` and returns every rank's tensor, in rank order.
    fn exchange(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let r = &self.shared;
        let aborted = || Error::InvalidInput("another tensor-parallel rank failed during this step".into());
        let mut s = r.state.lock().unwrap_or_else(|e| e.into_inner());
        while s.draining && !s.aborted {
            s = r.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if s.aborted {
            return Err(aborted());
        }
        s.posted[self.rank] = Some(x.clone());
        s.arrived += 1;
        let generation = s.generation;
        if s.arrived == r.world {
            s.generation += 1;
            s.draining = true;
            r.changed.notify_all();
        }
        while s.generation == generation && !s.aborted {
            s = r.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if s.aborted {
            return Err(aborted());
        }
        let all: Vec<Tensor> = s.posted.iter().flatten().cloned().collect();
        s.read += 1;
        if s.read == r.world {
            s.posted.iter_mut().for_each(|p| *p = None);
            (s.arrived, s.read, s.draining) = (0, 0, false);
            r.changed.notify_all();
        }
        Ok(all)
    }
}

impl Communicator for LocalWorld {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.shared.world
    }
    fn all_reduce_sum(&self, x: &Tensor) -> Result<Tensor> {
        let all = self.exchange(x)?;
        let mut sum = all[0].clone();
        for t in &all[1..] {
            sum = (sum + t).ctx("all-reduce sum")?;
        }
        Ok(sum)
    }
    fn all_gather(&self, x: &Tensor) -> Result<Tensor> {
        Tensor::cat(&self.exchange(x)?, 0).ctx("all-gather")
    }
    fn abort(&self) {
        let mut s = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        s.aborted = true;
        self.shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Many rounds back to back, each rank posting `rank + round`: no round may mix with the
    /// next (a fast rank posting round r+1 before a slow one has read round r).
    #[test]
    fn rounds_do_not_mix() {
        let world = LocalWorld::new(4);
        let handles: Vec<_> = world
            .into_iter()
            .map(|c| {
                std::thread::spawn(move || {
                    for round in 0..200u32 {
                        let x = Tensor::new(&[(c.rank() as u32 + round) as f32], &Device::Cpu).unwrap();
                        let s = c.all_reduce_sum(&x).unwrap().to_vec1::<f32>().unwrap();
                        assert_eq!(s, [(6 + 4 * round) as f32], "round {round}");
                        let g = c.all_gather(&x).unwrap().to_vec1::<f32>().unwrap();
                        assert_eq!(g, (0..4).map(|r| (r + round) as f32).collect::<Vec<_>>());
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }

    #[test]
    fn an_aborted_world_fails_instead_of_waiting() {
        let mut world = LocalWorld::new(2);
        let (r1, r0) = (world.pop().unwrap(), world.pop().unwrap());
        let waiter = std::thread::spawn(move || r0.all_reduce_sum(&Tensor::new(&[1f32], &Device::Cpu).unwrap()));
        r1.abort();
        let err = waiter.join().unwrap().unwrap_err().to_string();
        assert!(err.contains("another tensor-parallel rank failed"), "{err}");
    }
}
