//! Loading a model split over `world` ranks: every rank on its own thread (and, on GPUs, its own
//! device and NCCL communicator), each reading its slices of the same checkpoint; rank 0's model
//! comes back, driving the others.

use std::sync::Arc;

use candle_core::Device;

use super::{Communicator, Followers, LocalWorld};
use crate::config::hf::{from_hf_config, HfConfig};
use crate::load::{LoadOptions, LoadedModel};
use crate::nn::Model;
use crate::source::ModelFiles;
use crate::{Error, Result};

/// Makes rank `r`'s communicator; called on that rank's thread, all ranks at once (NCCL's
/// initialisation is itself a collective).
pub(super) type MakeComm = Box<dyn FnOnce() -> Result<Arc<dyn Communicator>> + Send>;

/// [`crate::load::load_with`] split over `world` ranks: `cpu` runs them as threads exchanging
/// tensors in memory ([`LocalWorld`]); `cuda:N` puts rank `r` on GPU `N + r`, talking over NCCL.
/// `world == 1` is a plain load. HF safetensors checkpoints only (GGUF weights are quantized).
pub fn load_tensor_parallel(files: &ModelFiles, opts: &LoadOptions, world: usize) -> Result<LoadedModel> {
    load_split(files, opts, world, false)
}

/// [`load_tensor_parallel`] with every rank on `opts.device` and the collectives in memory
/// ([`LocalWorld`]) whatever the device: the sharded decoder checked on one GPU, without NCCL.
pub fn load_tensor_parallel_in_process(files: &ModelFiles, opts: &LoadOptions, world: usize) -> Result<LoadedModel> {
    load_split(files, opts, world, true)
}

fn load_split(files: &ModelFiles, opts: &LoadOptions, world: usize, in_process: bool) -> Result<LoadedModel> {
    if world <= 1 {
        return crate::load::load_with(files, opts);
    }
    let ModelFiles::HfDir {
        dir,
        config,
        weights: weight_files,
        tokenizer_json,
        tokenizer_config,
        generation_config,
        chat_template_jinja,
    } = files
    else {
        return Err(Error::config(
            "tensor_parallel_size",
            "a GGUF model cannot be split across ranks (its weights are block-quantized); use an HF safetensors checkpoint",
        ));
    };
    let raw = HfConfig::from_file(config)?;
    let weights = crate::load::hf_weights(dir, weight_files, opts.load_format, None)?;
    let (cfg, names) =
        from_hf_config(&raw, &|n| weights.contains(n)).map_err(|e| Error::bad_file(config, e.to_string()))?;
    // What cannot be split is refused before any device is opened (a split that does not fit the
    // model is the answer, whether or not the host has that many GPUs).
    super::shard::check_supported(&cfg, &names)?;
    super::Heads::of(super::Shard { rank: 0, world }, cfg.attention.num_heads, cfg.attention.num_kv_heads)?;
    let dtype = opts.dtype.unwrap_or_else(|| crate::cuda::default_dtype(&opts.device));
    let (devices, comms) = world_on(&opts.device, world, in_process)?;
    let loaded: Vec<Result<Model>> = std::thread::scope(|s| {
        let handles: Vec<_> = devices
            .iter()
            .zip(comms)
            .map(|(dev, make)| {
                let (cfg, names, weights) = (cfg.clone(), &names, weights.as_ref());
                s.spawn(move || {
                    let model = Model::load_rank(cfg, names, weights, dev, dtype, Some(make()?))?;
                    // Split models run eagerly. Captured with their NCCL calls (each rank its
                    // own graph), the replays gave wrong logits on two H200s (tp.rs, qwen2,
                    // relative error 0.97 from the first replayed step); not yet understood, so
                    // that path is opt-in (PROM_TP_CUDA_GRAPHS=1) for investigation only. Ranks
                    // sharing one GPU's stream (in process) would record each other's work.
                    let opt_in = std::env::var("PROM_TP_CUDA_GRAPHS").as_deref() == Ok("1");
                    model.set_cuda_graphs(opts.cuda_graphs && opt_in && !in_process);
                    crate::cuda::synchronize(dev)?;
                    Ok(model)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(Error::InvalidInput("a rank panicked while loading".into()))))
            .collect()
    });
    let mut models = loaded.into_iter().collect::<Result<Vec<_>>>()?;
    let followers = Followers::start(models.split_off(1))?;
    let mut model = models.pop().ok_or_else(|| Error::InvalidInput("no rank 0".into()))?;
    if let Some(tp) = model.tensor_parallel_mut() {
        tp.followers = Some(followers);
    }
    let tokenizer = tokenizer_json
        .as_deref()
        .map(|t| crate::Tokenizer::from_hf_files(t, tokenizer_config.as_deref()))
        .transpose()?;
    let chat_template =
        crate::chat::ChatTemplate::from_hf_files(tokenizer_config.as_deref(), chat_template_jinja.as_deref())?;
    let generation_config = match generation_config {
        Some(p) => crate::generation_config::GenerationConfig::from_file(p)?,
        None => Default::default(),
    };
    Ok(LoadedModel { model, tokenizer, chat_template, generation_config, weights, files: files.clone() })
}

/// Each rank's device and the maker of its communicator.
fn world_on(first: &Device, world: usize, in_process: bool) -> Result<(Vec<Device>, Vec<MakeComm>)> {
    match first {
        _ if in_process || first.is_cpu() => {
            let comms = LocalWorld::new(world)
                .into_iter()
                .map(|c| -> MakeComm { Box::new(move || Ok(Arc::new(c) as Arc<dyn Communicator>)) })
                .collect();
            Ok((vec![first.clone(); world], comms))
        }
        #[cfg(feature = "cuda")]
        Device::Cuda(_) => super::nccl::world_on(first, world),
        other => Err(Error::config(
            "tensor_parallel_size",
            format!("tensor parallelism runs on the CPU or CUDA GPUs, not on {:?}", other.location()),
        )),
    }
}
